// Chromium (Debian's /usr/bin/chromium) with the built extension, driven by
// playwright-core; a fresh profile per launch.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { WORK } from './paths.js';

// Playwright passes its own --disable-features; Chromium honours only the last
// one, so ours comes last and carries Playwright's list plus what we need:
// loopback host candidates for WebRTC, and --load-extension. Storage
// partitioning stays ON (Playwright turns it off), as users have it.
const DISABLED_FEATURES = [
  'AvoidUnnecessaryBeforeUnloadCheckSync',
  'DestroyProfileOnBrowserClose',
  'HttpsUpgrades',
  'HttpsFirstBalancedModeAutoEnable',
  'LensOverlay',
  'MediaRouter',
  'PaintHolding',
  'AvoidCorsURLLoaderRestartOnRedirect',
  'OptimizationHints',
  'NetworkTimeServiceQuerying',
  'AimEnabled',
  'PreconnectToSearch',
  'WebRtcHideLocalIpsWithMdns',
  'DisableLoadExtensionCommandLineSwitch',
];

/**
 * Launches Chromium with the extension and a fresh profile (or `profile`,
 * one made by an earlier launch). Downloads go to `downloads` under the
 * names the extension gives them (Playwright's own download handling, which
 * renames files, is switched off).
 */
export async function launchChromium(extensionDir, { downloads, profile: reuse } = {}) {
  const profile = reuse ?? mkdtempSync(join(WORK, 'chromium-profile-'));
  mkdirSync(join(profile, 'Default'), { recursive: true });
  if (!reuse) {
    writeFileSync(
      join(profile, 'Default/Preferences'),
      JSON.stringify({ download: { default_directory: downloads ?? join(profile, 'Downloads'), prompt_for_download: false } }),
    );
  }
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: false, // --headless=new is passed below, as an argument we control
    ignoreDefaultArgs: ['--disable-extensions', '--disable-component-extensions-with-background-pages'],
    viewport: { width: 1280, height: 800 },
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      `--disable-extensions-except=${extensionDir}`,
      `--load-extension=${extensionDir}`,
      `--disable-features=${DISABLED_FEATURES.join(',')}`,
    ],
  });
  let worker = context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://'));
  worker ??= await context.waitForEvent('serviceworker', {
    predicate: (w) => w.url().startsWith('chrome-extension://'),
    timeout: 30_000,
  });
  const extensionId = new URL(worker.url()).host;
  const page = context.pages()[0] ?? (await context.newPage());
  const cdp = await context.newCDPSession(page);
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'default' });
  return { context, worker, extensionId, base: `chrome-extension://${extensionId}/`, profile };
}
