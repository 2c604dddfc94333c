// Thumbnails, made by the sender when a bundle is created: small JPEGs that
// travel inside the bundle (in its manifest file) so every recipient sees them.
import { isThumbnailable } from '../common/filetypes.js';

/** Longest side of a thumbnail, in pixels (2x the mosaic's tile size). */
export const THUMB_SIDE = 320;
/** Images larger than this are shown with an icon rather than decoded whole. */
const MAX_IMAGE_BYTES = 64 * 1024 * 1024;
/** At most this many thumbnails per bundle (they make the manifest grow). */
export const MAX_THUMBS = 400;

/**
 * A thumbnail of an image file as a JPEG data URL, with the image's size, or
 * null when the file is not an image this browser decodes.
 */
export async function thumbnail(blob, type) {
  if (!isThumbnailable(type) || blob.size > MAX_IMAGE_BYTES) return null;
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    return null; // Not decodable (corrupt, or a format this browser lacks).
  }
  try {
    const { width, height } = bitmap;
    const scale = Math.min(1, THUMB_SIDE / Math.max(width, height));
    const w = Math.max(1, Math.round(width * scale));
    const h = Math.max(1, Math.round(height * scale));
    const canvas = new OffscreenCanvas(w, h);
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, w, h);
    const jpeg = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.8 });
    return { dataUrl: await dataUrl(jpeg), width, height };
  } finally {
    bitmap.close();
  }
}

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}
