// Chromium (Debian's /usr/bin/chromium) driven by playwright-core: the one
// launcher of every end-to-end test and benchmark, with or without the built
// extension, a fresh profile per launch (or a given one, to restart it).
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { WORK } from './paths.js';

// Playwright passes its own --disable-features; Chromium honours only the last
// one, so ours comes last and carries Playwright's list plus what we need:
// loopback host candidates for WebRTC (WebRtcHideLocalIpsWithMdns), and
// --load-extension. Storage partitioning stays ON (Playwright turns it off),
// as users have it.
export const DISABLED_FEATURES = [
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

/** The browser's own log (Chromium's --log-file) in a profile: crashes and CHECK failures land there. */
export function chromiumLog(profile) {
  return join(profile, 'chrome_debug.log');
}

/** The lines of a profile's browser log that tell why a process died. */
export function fatalLines(profile) {
  try {
    return readFileSync(chromiumLog(profile), 'utf8')
      .split('\n')
      .filter((l) => /FATAL|Check failed|crash|OOM|out of memory/i.test(l))
      .slice(-20);
  } catch {
    return [];
  }
}

/**
 * Launches Chromium with a fresh profile under `workDir` (or `profile`, kept
 * as it is). With `extension`, the built extension is loaded and it waits for
 * its service worker. Downloads go to `downloads` under the names the page
 * gives them (Playwright's own download handling, which renames files, is
 * switched off). A renderer that crashes is reported on the console with the
 * browser log's fatal lines.
 */
export async function launchBrowser({ extension, downloads, label = 'chromium', workDir = WORK, profile, args = [] } = {}) {
  if (!profile) {
    profile = mkdtempSync(join(workDir, `chromium-${label}-`));
    mkdirSync(join(profile, 'Default'), { recursive: true });
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
      '--enable-logging',
      `--log-file=${chromiumLog(profile)}`,
      ...args,
      ...(extension ? [`--disable-extensions-except=${extension}`, `--load-extension=${extension}`] : []),
      `--disable-features=${DISABLED_FEATURES.join(',')}`,
    ],
  });
  const watch = (page) =>
    page.on('crash', () => {
      console.log(`[${label}] the renderer of ${page.url()} crashed`);
      for (const l of fatalLines(profile)) console.log(`[${label}]   ${l}`);
    });
  context.pages().forEach(watch);
  context.on('page', watch);
  const page = context.pages()[0] ?? (await context.newPage());
  const cdp = await context.newCDPSession(page);
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'default' });
  if (!extension) return { context, page, profile };
  let worker = context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://'));
  worker ??= await context.waitForEvent('serviceworker', {
    predicate: (w) => w.url().startsWith('chrome-extension://'),
    timeout: 30_000,
  });
  const extensionId = new URL(worker.url()).host;
  return { context, page, worker, extensionId, base: `chrome-extension://${extensionId}/`, profile };
}

/** Launches Chromium with the extension and a fresh profile (see launchBrowser). */
export function launchChromium(extensionDir, { downloads, label, profile } = {}) {
  return launchBrowser({ extension: extensionDir, downloads, label, profile });
}
