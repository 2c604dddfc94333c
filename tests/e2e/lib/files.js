// The files the tests send: a real JPEG (drawn and encoded by the browser
// under test), a text file and random binary data spanning many pieces.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** In-page function: draws a picture and encodes it as JPEG; returns base64. */
export const DRAW_JPEG = `(() => {
  const c = document.createElement('canvas');
  c.width = 1200; c.height = 800;
  const g = c.getContext('2d');
  const sky = g.createLinearGradient(0, 0, 0, 800);
  sky.addColorStop(0, '#2b1d6b'); sky.addColorStop(0.55, '#e0728a'); sky.addColorStop(1, '#ffcf8a');
  g.fillStyle = sky; g.fillRect(0, 0, 1200, 800);
  g.fillStyle = '#fff4d6'; g.beginPath(); g.arc(820, 430, 120, 0, Math.PI * 2); g.fill();
  g.fillStyle = '#1d1640';
  g.beginPath(); g.moveTo(0, 800); g.lineTo(0, 560); g.lineTo(260, 380); g.lineTo(470, 540); g.lineTo(700, 330);
  g.lineTo(960, 560); g.lineTo(1200, 430); g.lineTo(1200, 800); g.fill();
  g.fillStyle = 'rgba(255,255,255,.85)';
  for (let i = 0; i < 90; i++) { g.fillRect((i * 137) % 1200, (i * 71) % 300, 2, 2); }
  return c.toDataURL('image/jpeg', 0.9).split(',')[1];
})()`;

/**
 * Writes the three test files into `dir`; returns their descriptions in
 * drop order: [{name, type, path, size, sha256, base64}].
 */
export function makeFiles(dir, jpegBase64) {
  mkdirSync(dir, { recursive: true });
  const jpeg = Buffer.from(jpegBase64, 'base64');
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new Error('the browser did not make a JPEG');
  const text = Buffer.from(
    Array.from({ length: 60 }, (_, i) => `Line ${i + 1}: Swarmdrop sends large bundles, peer-assisted.`).join('\n') + '\n',
  );
  // 3 MiB and a bit: about 200 pieces of 16 KiB, pieces spanning file boundaries.
  const data = randomBytes(3 * 1024 * 1024 + 12345);
  const files = [
    { name: 'sunset.jpg', type: 'image/jpeg', bytes: jpeg },
    { name: 'notes.txt', type: 'text/plain', bytes: text },
    { name: 'data.bin', type: 'application/octet-stream', bytes: data },
  ];
  return files.map(({ name, type, bytes }) => {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return {
      name,
      type,
      path,
      size: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      base64: bytes.toString('base64'),
    };
  });
}

export function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}
