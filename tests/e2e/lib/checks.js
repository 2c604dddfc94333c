// Independent checks of what the extension produced: transmission-show reads
// the .torrent, and Python's hashlib verifies the files against its pieces.
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT } from './paths.js';

/** Runs transmission-show; returns {text, name, hash, pieceCount, files: [path]}. */
export function transmissionShow(torrentPath) {
  const text = execFileSync('transmission-show', [torrentPath], { encoding: 'utf8' });
  const field = (label) => text.match(new RegExp(`^\\s*${label}:\\s*(.+)$`, 'm'))?.[1]?.trim();
  const filesSection = text.split(/^FILES\s*$/m)[1] ?? '';
  const files = filesSection
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => l.replace(/\s+\([^)]*\)$/, ''));
  return {
    text,
    name: field('Name'),
    hash: field('Hash v1') ?? field('Hash'),
    pieceCount: Number(field('Piece Count')),
    files,
  };
}

/**
 * Lays out the bundle as a client saves it (dir/<name>/<path>) from the
 * original files and the manifest bytes, then runs verify_torrent.py.
 */
export function verifyWithHashlib(torrentPath, name, files, manifestBytes, dir) {
  const root = join(dir, name);
  mkdirSync(join(root, '.swarmdrop'), { recursive: true });
  writeFileSync(join(root, '.swarmdrop/manifest.json'), manifestBytes);
  for (const f of files) {
    mkdirSync(dirname(join(root, f.name)), { recursive: true });
    symlinkSync(f.path, join(root, f.name)); // the very bytes that were dropped
  }
  try {
    const out = execFileSync('python3', [join(ROOT, 'tests/e2e/verify_torrent.py'), torrentPath, dir], {
      encoding: 'utf8',
    });
    return JSON.parse(out);
  } catch (err) {
    // Exit status 1 with a report: the report says what failed.
    if (err.stdout) return JSON.parse(err.stdout);
    throw err;
  }
}
