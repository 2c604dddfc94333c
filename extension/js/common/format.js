// Formatting for the UI: sizes, speeds, durations, counts.

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** 1234567 -> "1.23 MB" (decimal units, as file managers show them). */
export function bytes(n) {
  if (!Number.isFinite(n) || n < 0) return '–';
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) {
    n /= 1000;
    i++;
  }
  const digits = i === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2;
  return `${n.toFixed(digits)} ${UNITS[i]}`;
}

/** Bytes per second -> "4.20 MB/s". */
export function speed(bps) {
  return `${bytes(Math.max(0, bps || 0))}/s`;
}

/** Seconds -> "2 h 5 min", "3 min 20 s", "45 s"; unknown -> "–". */
export function duration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** 3 -> "3 files", 1 -> "1 file". */
export function files(n) {
  return `${n} ${n === 1 ? 'file' : 'files'}`;
}

/** 0.4567 -> "45 %"; never shows 100 % before the end. */
export function percent(fraction) {
  const p = Math.min(1, Math.max(0, fraction || 0));
  return `${p < 1 ? Math.min(99, Math.floor(p * 100)) : 100} %`;
}
