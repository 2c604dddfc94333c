// Paths shared by the end-to-end tests.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const DIST = join(ROOT, 'dist');
export const SITE = join(ROOT, 'tests/e2e/site');
export const SCREENSHOTS = join(ROOT, 'target/screenshots');

mkdirSync(SCREENSHOTS, { recursive: true });
mkdirSync(join(ROOT, 'target/e2e'), { recursive: true });

/**
 * This process's own folder under target/e2e (each test file runs in its own
 * process): its browser profiles, server data, downloads and files. It is
 * deleted when the process exits, so the suite needs the disk of one test
 * file at a time, not of all of them: Chromium refuses storage (IndexedDB,
 * OPFS, streamed Blobs) long before the disk is full, and a suite that kept
 * every 1 GiB file it made failed that way. `SWARMDROP_KEEP_E2E=1` keeps it
 * for a look after a failure.
 */
export const WORK = mkdtempSync(join(ROOT, 'target/e2e', `${basename(process.argv[1] ?? 'run', '.js')}-`));

process.on('exit', () => {
  if (process.env.SWARMDROP_KEEP_E2E) return;
  try {
    rmSync(WORK, { recursive: true, force: true, maxRetries: 3 });
  } catch (e) {
    // A browser that outlived its test may still hold a file; the next
    // `./build.sh test` removes target/e2e whole.
    console.error(`# could not delete ${WORK}: ${e.message}`);
  }
});

/** The built extension for `browser`, or a clear failure telling how to build it. */
export function builtExtension(browser) {
  const dir = join(DIST, browser);
  if (!existsSync(join(dir, 'manifest.json')) || !existsSync(join(dir, 'wasm/swarmdrop_bg.wasm'))) {
    throw new Error(`${dir} is not built: run ./build.sh first`);
  }
  return dir;
}
