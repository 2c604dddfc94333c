// Paths shared by the end-to-end tests.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const DIST = join(ROOT, 'dist');
export const SITE = join(ROOT, 'tests/e2e/site');
export const SCREENSHOTS = join(ROOT, 'target/screenshots');
export const WORK = join(ROOT, 'target/e2e');

mkdirSync(SCREENSHOTS, { recursive: true });
mkdirSync(WORK, { recursive: true });

/** The built extension for `browser`, or a clear failure telling how to build it. */
export function builtExtension(browser) {
  const dir = join(DIST, browser);
  if (!existsSync(join(dir, 'manifest.json')) || !existsSync(join(dir, 'wasm/swarmdrop_bg.wasm'))) {
    throw new Error(`${dir} is not built: run ./build.sh first`);
  }
  return dir;
}
