// Chromium (Debian's /usr/bin/chromium) driven by playwright-core: the one
// launcher of every end-to-end test and benchmark, with or without the built
// extension, a fresh profile per launch (or a given one, to restart it).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { WORK } from './paths.js';

// Playwright passes its own --disable-features; Chromium honours only the last
// one, so ours comes last and carries Playwright's list plus what we need:
// loopback host candidates for WebRTC (WebRtcHideLocalIpsWithMdns), and
// --load-extension. Storage partitioning stays ON (Playwright turns it off),
// as users have it.
/** The Chromium every test and benchmark runs: $CHROMIUM, or Debian's. */
export const CHROMIUM_BIN = process.env.CHROMIUM ?? '/usr/bin/chromium';

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

/** The flags every Chromium launched here gets, on `profile`, with `extension` loaded if given. */
function chromiumArgs(profile, extension, args) {
  return [
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
  ];
}

/** Chrome's id of an unpacked extension: its absolute path's SHA-256, in letters a to p. */
export function unpackedId(dir) {
  const hex = createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 32);
  return [...hex].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join('');
}

/**
 * Starts Chromium as a process of our own, in a process group of its own
 * (so that a test can kill the whole browser, as a crash would), and
 * connects Playwright to it over CDP.
 */
async function spawnChromium(label, profile, extension, args) {
  const child = spawn(
    CHROMIUM_BIN,
    [
      ...chromiumArgs(profile, extension, [
        '--no-default-browser-check',
        '--remote-debugging-port=0',
        `--user-data-dir=${profile}`,
        ...args,
      ]),
      'about:blank',
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  const ws = await new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${label}: Chromium did not start: ${err.slice(-2000)}`)), 60_000);
    child.stderr.on('data', (d) => {
      err += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`${label}: Chromium exited with ${code}: ${err.slice(-2000)}`)));
  });
  child.stderr.resume();
  const browser = await chromium.connectOverCDP(ws);
  /** SIGKILL to the browser's whole process group: a crash, not a close. */
  const kill = async () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    await exited;
    // Children that left the group (none expected) would keep the profile locked.
    await new Promise((r) => setTimeout(r, 500));
    await browser.close().catch(() => {});
  };
  const close = async () => {
    await browser.close().catch(() => {});
    await kill();
  };
  return { context: browser.contexts()[0], browser, child, ws, exited, kill, close };
}

/**
 * Launches Chromium with a fresh profile under `workDir` (or `profile`, kept
 * as it is; a profile not made yet gets the same first preferences). With
 * `extension`, the built extension is loaded and, unless `waitForWorker` is
 * false, it waits for its service worker. Downloads go to `downloads` under
 * the names the page gives them (Playwright's own download handling, which
 * renames files, is switched off). `preferences` are added to a new
 * profile's preferences. A renderer that crashes is reported on the console
 * with the browser log's fatal lines.
 *
 * With `ownProcess`, Chromium is started as a process of our own and
 * Playwright connects to it over CDP: the result then also has `child`, the
 * browser's process, `ws`, its CDP endpoint, `exited`, a promise of its
 * exit, `kill()`, SIGKILL to its whole process group (a crash), and
 * `close()`.
 */
export async function launchBrowser({
  extension,
  downloads,
  label = 'chromium',
  workDir = WORK,
  profile,
  args = [],
  preferences = {},
  ownProcess = false,
  waitForWorker = true,
} = {}) {
  profile ??= mkdtempSync(join(workDir, `chromium-${label}-`));
  if (!existsSync(join(profile, 'Default/Preferences'))) {
    mkdirSync(join(profile, 'Default'), { recursive: true });
    writeFileSync(
      join(profile, 'Default/Preferences'),
      JSON.stringify({
        download: { default_directory: downloads ?? join(profile, 'Downloads'), prompt_for_download: false },
        ...preferences,
      }),
    );
  }
  let own = null;
  let context;
  if (ownProcess) {
    own = await spawnChromium(label, profile, extension, args);
    context = own.context;
  } else {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_BIN,
      headless: false, // --headless=new is passed below, as an argument we control
      ignoreDefaultArgs: ['--disable-extensions', '--disable-component-extensions-with-background-pages'],
      viewport: { width: 1280, height: 800 },
      args: chromiumArgs(profile, extension, args),
    });
  }
  const watch = (page) =>
    page.on('crash', () => {
      console.log(`[${label}] the renderer of ${page.url()} crashed`);
      for (const l of fatalLines(profile)) console.log(`[${label}]   ${l}`);
    });
  context.pages().forEach(watch);
  context.on('page', watch);
  let page;
  if (own) {
    // No page is opened in a browser of our own: after a restart, what
    // runs must run by itself.
    page = context.pages()[0] ?? null;
    const cdp = await own.browser.newBrowserCDPSession();
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'default' });
  } else {
    page = context.pages()[0] ?? (await context.newPage());
    const cdp = await context.newCDPSession(page);
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'default' });
  }
  const b = { context, page, profile, ...(own ?? {}) };
  if (!extension) return b;
  let worker = null;
  if (waitForWorker) {
    worker = context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://'));
    worker ??= await context.waitForEvent('serviceworker', {
      predicate: (w) => w.url().startsWith('chrome-extension://'),
      timeout: 30_000,
    });
  }
  const extensionId = worker ? new URL(worker.url()).host : unpackedId(extension);
  return { ...b, worker, extensionId, base: `chrome-extension://${extensionId}/` };
}

/** Launches Chromium with the extension and a fresh profile (see launchBrowser). */
export function launchChromium(extensionDir, { downloads, label, profile } = {}) {
  return launchBrowser({ extension: extensionDir, downloads, label, profile });
}
