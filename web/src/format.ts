/**
 * Numbers and times as people read them: "12.3 MiB", "4 min ago", "2027-06-30". No DOM here: the unit tests
 * run this module under node.
 */

/** IEC units (1 KiB = 1024 B), as the CLI prints them (src/cli/people.ts `bytes`). */
const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** Bytes in IEC units, three significant digits ("412 B", "1.36 KiB", "12.3 MiB"). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '—';
  let value = bytes;
  let unit = 0;
  // 1000 KiB and up reads as MiB ("0.98 MiB"), so a value never shows four digits before its unit.
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  // "50.0 KiB" → "50 KiB", "1.50 GiB" → "1.5 GiB"
  const text = value.toFixed(digits).replace(/\.0+$|(\.\d*?)0+$/, '$1');
  return `${text} ${BYTE_UNITS[unit]}`;
}

/** A rate in bytes per second. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

const UNITS: readonly [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['week', 7 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
];

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto', style: 'long' });

/** "3 minutes ago", "in 2 days"; "never" for null. */
export function formatRelative(iso: string | null, now: number = Date.now()): string {
  if (iso === null) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  const seconds = Math.round((t - now) / 1000);
  if (Math.abs(seconds) < 10) return 'just now';
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === 'second')
      return relative.format(Math.trunc(seconds / size), unit);
  }
  return '—';
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});

/** A time in the browser's time zone, with date and minutes. */
export function formatDateTime(iso: string | null): string {
  if (iso === null) return '—';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? '—' : dateTime.format(t);
}

/**
 * Checks an expiry typed as YYYY-MM-DD (the console's field is ISO text, the same whatever the browser's
 * locale): the text back when it is a real calendar date, "" for an empty field, undefined otherwise.
 */
export function parseExpiryInput(text: string): string | undefined {
  const t = text.trim();
  if (t === '') return '';
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(t);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const d = new Date(Date.UTC(year, month - 1, day));
  return d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day
    ? t
    : undefined;
}

/**
 * An expiry as the date it was given as (YYYY-MM-DD). The server keeps a date as its last millisecond in UTC
 * (src/control/validate.ts `expiry`), so the UTC date is the one the admin typed.
 */
export function expiryDate(iso: string | null): string {
  return iso === null ? '' : iso.slice(0, 10);
}

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const hour = new Intl.DateTimeFormat(undefined, { hour: 'numeric' });

/** "14:00" in the browser's time zone. */
export function formatClock(ms: number): string {
  return clock.format(ms);
}

/** A whole hour as briefly as the locale says it ("2 PM", "14"), for chart axes. */
export function formatHour(ms: number): string {
  return hour.format(ms);
}

/** Plural noun: count("member", 2) → "2 members". */
export function count(noun: string, n: number): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
