// The toolbar badge: progress while one transfer runs, the number running otherwise.
import { ext } from '../common/ext.js';

export async function setBadge(running, progress) {
  let text = '';
  if (running === 1 && progress !== null && progress < 1) {
    text = `${Math.floor(progress * 100)}%`;
  } else if (running > 0) {
    text = String(running);
  }
  await ext.action.setBadgeBackgroundColor({ color: '#5b4cf0' });
  if (ext.action.setBadgeTextColor) await ext.action.setBadgeTextColor({ color: '#ffffff' });
  await ext.action.setBadgeText({ text });
  await ext.action.setTitle({
    title: running > 0 ? `Swarmdrop: ${running} transfer${running === 1 ? '' : 's'} running` : 'Swarmdrop',
  });
}
