// A small W3C WebDriver client (fetch) for geckodriver and Firefox ESR.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { WORK } from './paths.js';

/** An element reference as WebDriver passes it. */
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

export class WebDriverError extends Error {}

export class Session {
  constructor(base, id, driver, profile, { pid = null, keepProfile = false } = {}) {
    this.base = base;
    this.id = id;
    this.driver = driver;
    this.profile = profile;
    /** Firefox's process id (geckodriver's moz:processID). */
    this.pid = pid;
    this.keepProfile = keepProfile;
  }

  async cmd(method, path, body) {
    const res = await fetch(`${this.base}/session/${this.id}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok || json.value?.error) {
      throw new WebDriverError(`${method} ${path}: ${json.value?.error}: ${json.value?.message}`);
    }
    return json.value;
  }

  goto(url) {
    return this.cmd('POST', '/url', { url });
  }
  url() {
    return this.cmd('GET', '/url');
  }
  /** Runs an async script: the last argument is the callback; returns its value. */
  execAsync(fnSource, args = []) {
    const script = `const done = arguments[arguments.length - 1];
      Promise.resolve((${fnSource}).apply(null, Array.prototype.slice.call(arguments, 0, -1)))
        .then((v) => done({ ok: true, v }), (e) => done({ ok: false, e: String(e && e.stack || e) }));`;
    return this.cmd('POST', '/execute/async', { script, args }).then((r) => {
      if (!r?.ok) throw new WebDriverError(`script failed: ${r?.e}`);
      return r.v;
    });
  }
  async find(css) {
    const r = await this.cmd('POST', '/element', { using: 'css selector', value: css });
    return r[ELEMENT];
  }
  async findAll(css) {
    const r = await this.cmd('POST', '/elements', { using: 'css selector', value: css });
    return r.map((e) => e[ELEMENT]);
  }
  click(el) {
    return this.cmd('POST', `/element/${el}/click`, {});
  }
  sendKeys(el, text) {
    return this.cmd('POST', `/element/${el}/value`, { text });
  }
  text(el) {
    return this.cmd('GET', `/element/${el}/text`);
  }
  attr(el, name) {
    return this.cmd('GET', `/element/${el}/attribute/${name}`);
  }
  displayed(el) {
    return this.cmd('GET', `/element/${el}/displayed`);
  }
  /** Switches into a frame (an element or an index), or back to the top with null. */
  frame(id) {
    return this.cmd('POST', '/frame', { id: typeof id === 'string' ? { [ELEMENT]: id } : id });
  }
  newTab() {
    return this.cmd('POST', '/window/new', { type: 'tab' });
  }
  switchTo(handle) {
    return this.cmd('POST', '/window', { handle });
  }
  handles() {
    return this.cmd('GET', '/window/handles');
  }
  setRect(rect) {
    return this.cmd('POST', '/window/rect', rect);
  }
  /** PNG of the viewport, or of one element. */
  async screenshot(el) {
    const b64 = await this.cmd('GET', el ? `/element/${el}/screenshot` : '/screenshot');
    return Buffer.from(b64, 'base64');
  }
  /** Installs an add-on: temporary (a directory or .xpi), or for good (an .xpi, unsigned where allowed). */
  installAddon(path, { temporary = true } = {}) {
    return this.cmd('POST', '/moz/addon/install', { path, temporary });
  }
  /** Polls an async script until it returns something truthy. */
  async until(fnSource, args = [], timeout = 30_000) {
    const end = Date.now() + timeout;
    for (;;) {
      const v = await this.execAsync(fnSource, args);
      if (v) return v;
      if (Date.now() > end) throw new WebDriverError(`timed out waiting for ${fnSource}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  async close() {
    try {
      await fetch(`${this.base}/session/${this.id}`, { method: 'DELETE' });
    } finally {
      this.driver.kill();
      if (!this.keepProfile) rmSync(this.profile, { recursive: true, force: true });
    }
  }
  /** SIGKILL to Firefox (a crash, not a quit), then geckodriver; the profile stays. */
  async kill() {
    if (!this.pid) throw new WebDriverError('no Firefox process id');
    process.kill(this.pid, 'SIGKILL');
    // Dead once the kernel says so (a zombie geckodriver has not reaped yet counts).
    const dead = () => {
      try {
        return /^\S+ \(.*\) Z/.test(readFileSync(`/proc/${this.pid}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    while (!dead()) await new Promise((r) => setTimeout(r, 100));
    const exited = new Promise((r) => (this.driver.exitCode !== null ? r() : this.driver.once('exit', r)));
    this.driver.kill();
    await exited;
  }
}

/**
 * Starts geckodriver and a headless Firefox ESR with a fresh profile, or on
 * `profile` (kept on close: a restart on the same profile).
 * @param {object} prefs Firefox preferences for the session
 */
export async function startFirefox(prefs = {}, { profile: given = null } = {}) {
  const port = await freePort();
  const driver = spawn(
    process.env.GECKODRIVER ?? 'geckodriver',
    ['--port', String(port), '--host', '127.0.0.1', '--allow-system-access'],
    { env: { ...process.env, MOZ_HEADLESS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  driver.stderr.on('data', (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await fetch(`${base}/status`);
      break;
    } catch {
      if (i > 100) throw new WebDriverError(`geckodriver did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const profile = given ?? mkdtempSync(join(WORK, 'firefox-profile-'));
  const res = await fetch(`${base}/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      capabilities: {
        alwaysMatch: {
          browserName: 'firefox',
          acceptInsecureCerts: true,
          'moz:firefoxOptions': {
            binary: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
            args: ['-headless', '-profile', profile],
            prefs,
          },
        },
      },
    }),
  });
  const json = await res.json();
  if (!res.ok) {
    driver.kill();
    throw new WebDriverError(`new session: ${JSON.stringify(json.value)}\n${log}`);
  }
  return new Session(base, json.value.sessionId, driver, profile, {
    pid: json.value.capabilities?.['moz:processID'] ?? null,
    keepProfile: given !== null,
  });
}
