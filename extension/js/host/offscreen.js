// Chrome: the offscreen document (reason WEB_RTC) that hosts the engine.
// Only `chrome.runtime` exists here; everything else goes through the background.
import { reply } from '../common/messages.js';
import { startHost } from './host.js';

const host = startHost((msg) => {
  chrome.runtime.sendMessage({ ...msg, target: 'background' }).catch(() => {
    // The service worker is starting up or gone; the next status will reach it.
  });
});

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (msg?.target !== 'host' || sender.id !== chrome.runtime.id) return false;
  return reply(host.handle(msg), sendResponse);
});
