// File kinds: a MIME type for files the browser did not type, and a kind for icons.

const BY_EXTENSION = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp',
  avif: 'image/avif', bmp: 'image/bmp', svg: 'image/svg+xml', heic: 'image/heic', tif: 'image/tiff',
  tiff: 'image/tiff', mp4: 'video/mp4', m4v: 'video/mp4', mov: 'video/quicktime', webm: 'video/webm',
  mkv: 'video/x-matroska', avi: 'video/x-msvideo', mp3: 'audio/mpeg', m4a: 'audio/mp4',
  wav: 'audio/wav', flac: 'audio/flac', ogg: 'audio/ogg', opus: 'audio/opus', pdf: 'application/pdf',
  zip: 'application/zip', gz: 'application/gzip', tgz: 'application/gzip', xz: 'application/x-xz',
  '7z': 'application/x-7z-compressed', rar: 'application/vnd.rar', tar: 'application/x-tar',
  txt: 'text/plain', md: 'text/markdown', csv: 'text/csv', json: 'application/json',
  html: 'text/html', css: 'text/css', js: 'text/javascript', rs: 'text/x-rust', py: 'text/x-python',
  doc: 'application/msword', docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xls: 'application/vnd.ms-excel', xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ppt: 'application/vnd.ms-powerpoint', pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text', iso: 'application/x-iso9660-image',
};

/** The MIME type of a file: the browser's, or one guessed from the name. */
export function mimeType(name, given = '') {
  if (given) return given;
  const ext = String(name).toLowerCase().split('.').pop();
  return BY_EXTENSION[ext] ?? 'application/octet-stream';
}

/** Images the browser can decode to make a thumbnail. */
export function isThumbnailable(type) {
  return /^image\/(jpeg|png|gif|webp|avif|bmp)$/.test(type);
}

/** The kind of a file, for its icon: image, video, audio, archive, document, text, or other. */
export function kind(type) {
  if (type.startsWith('image/')) return 'image';
  if (type.startsWith('video/')) return 'video';
  if (type.startsWith('audio/')) return 'audio';
  if (/zip|gzip|x-xz|7z|rar|x-tar|iso9660/.test(type)) return 'archive';
  if (/pdf|msword|officedocument|ms-excel|ms-powerpoint|opendocument/.test(type)) return 'document';
  if (type.startsWith('text/') || type === 'application/json') return 'text';
  return 'other';
}
