/**
 * The Multicast page's settings form (the querier's timers, static memberships, the switch and the LAN
 * interface) to a PATCH /settings body, and the settings back to form values. Pure (no DOM), so the unit tests
 * run it under node (test/unit/web-multicast-values.test.ts).
 *
 * Empty means the default: every timer field empty sends `multicastQuerier: null` (RFC 3376's defaults);
 * some empty sends the defaults for those (PATCH would otherwise keep their current values); an empty LAN
 * interface sends null (no IGMP proxy); blank membership rows are dropped.
 */
import type { FieldIssue } from './form-values.js';

/** RFC 3376 §8 defaults, as the server has them (src/control/multicast-settings.ts
 * MULTICAST_QUERIER_DEFAULTS; the unit test checks that they are the same). */
export const QUERIER_DEFAULTS = {
  robustness: 2,
  queryIntervalS: 125,
  queryResponseIntervalS: 10,
  lastMemberQueryIntervalS: 1,
} as const;

export type QuerierKey = keyof typeof QUERIER_DEFAULTS;
export const QUERIER_KEYS = Object.keys(QUERIER_DEFAULTS) as QuerierKey[];

export type Querier = { readonly [K in QuerierKey]: number };

export interface StaticMembership {
  readonly port: string;
  readonly group: string;
}

/** The multicast part of GET /settings. */
export interface MulticastSettings {
  readonly multicast?: boolean;
  readonly multicastLan?: string | null;
  readonly multicastQuerier?: Querier;
  readonly multicastStatic?: readonly StaticMembership[];
}

export interface MulticastFormValues {
  on: boolean;
  lan: string;
  querier: Record<QuerierKey, string>;
  statics: { port: string; group: string }[];
}

export interface MulticastPatch {
  multicast?: boolean;
  multicastLan?: string | null;
  multicastQuerier?: Querier | null;
  multicastStatic?: StaticMembership[] | null;
}

export type PatchResult =
  | {
      readonly ok: true;
      readonly patch: MulticastPatch;
      /** For each entry of patch.multicastStatic, the index of its form row (blank rows are dropped). */
      readonly rows: readonly number[];
    }
  | { readonly ok: false; readonly issues: readonly FieldIssue[] };

export function multicastFormValues(s: MulticastSettings): MulticastFormValues {
  const q = s.multicastQuerier;
  const querier = Object.fromEntries(QUERIER_KEYS.map((k) => [k, q ? String(q[k]) : ''])) as Record<
    QuerierKey,
    string
  >;
  return {
    on: s.multicast === true,
    lan: s.multicastLan ?? '',
    querier,
    statics: (s.multicastStatic ?? []).map((m) => ({ port: m.port, group: m.group })),
  };
}

/** Whole numbers for the robustness and the query interval; seconds in tenths for the other two. */
function timer(key: QuerierKey, text: string): number | undefined | FieldIssue {
  const t = text.trim();
  if (t === '') return undefined;
  const field = `multicastQuerier.${key}`;
  const whole = key === 'robustness' || key === 'queryIntervalS';
  const ok = whole ? /^[0-9]{1,6}$/.test(t) : /^[0-9]{1,6}(\.[0-9])?$/.test(t);
  if (!ok)
    return {
      field,
      message: whole
        ? `${field}: must be a whole number, or empty for the default (${QUERIER_DEFAULTS[key]})`
        : `${field}: must be seconds with at most one decimal (e.g. 2.5), or empty for the default (${QUERIER_DEFAULTS[key]})`,
    };
  return Number(t);
}

function sameQuerier(a: Querier | undefined, b: Querier): boolean {
  return a !== undefined && QUERIER_KEYS.every((k) => a[k] === b[k]);
}

function sameStatics(a: readonly StaticMembership[], b: readonly StaticMembership[]): boolean {
  return a.length === b.length && a.every((m, i) => m.port === b[i]?.port && m.group === b[i]?.group);
}

/**
 * The PATCH /settings body that makes the settings `current` what the form says: only the keys that change.
 * A row with a port but no group (or the reverse) is an issue naming `multicastStatic[i].port|group`, with i
 * the form row's index.
 */
export function multicastPatch(v: MulticastFormValues, current: MulticastSettings): PatchResult {
  const issues: FieldIssue[] = [];
  const timers: Partial<Record<QuerierKey, number>> = {};
  for (const k of QUERIER_KEYS) {
    const n = timer(k, v.querier[k]);
    if (typeof n === 'object') issues.push(n);
    else if (n !== undefined) timers[k] = n;
  }
  const statics: StaticMembership[] = [];
  const rows: number[] = [];
  v.statics.forEach((row, i) => {
    const port = row.port.trim();
    const group = row.group.trim();
    if (port === '' && group === '') return;
    const at = `multicastStatic[${i}]`;
    if (port === '')
      issues.push({ field: `${at}.port`, message: `${at}.port: member:NAME, site:NAME or lan` });
    if (group === '')
      issues.push({
        field: `${at}.group`,
        message: `${at}.group: a group address, e.g. 239.1.1.1 or ff15::1`,
      });
    statics.push({ port, group });
    rows.push(i);
  });
  if (issues.length > 0) return { ok: false, issues };

  const patch: MulticastPatch = {};
  if (v.on !== (current.multicast === true)) patch.multicast = v.on;
  const lan = v.lan.trim() === '' ? null : v.lan.trim();
  if (lan !== (current.multicastLan ?? null)) patch.multicastLan = lan;
  if (Object.keys(timers).length === 0) {
    if (current.multicastQuerier !== undefined) patch.multicastQuerier = null;
  } else {
    const q = { ...QUERIER_DEFAULTS, ...timers };
    if (!sameQuerier(current.multicastQuerier, q)) patch.multicastQuerier = q;
  }
  if (!sameStatics(statics, current.multicastStatic ?? []))
    patch.multicastStatic = statics.length > 0 ? statics : null;
  return { ok: true, patch, rows };
}

/**
 * Where the form shows an error the API reported on `field`: a static membership's index in the list sent is
 * turned into its form row's ("multicastStatic[1].group" → row rows[1]), as `data-field` names it.
 */
export function formField(field: string, rows: readonly number[]): string {
  const m = /^multicastStatic\[(\d+)\](.*)$/.exec(field);
  if (!m) return field;
  const row = rows[Number(m[1])];
  return row === undefined ? 'multicastStatic' : `multicastStatic[${row}]${m[2] ?? ''}`;
}
