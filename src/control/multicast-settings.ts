/**
 * Multicast settings beyond on/off and the LAN: the querier's timers (RFC 3376 §8, RFC 3810 §9) and static
 * memberships (a port joined to a group without reports, for hosts that never send IGMP/MLD, as AWS Transit
 * Gateway's static group members). Both live in the settings document, so they travel with it through the
 * change feed (a running gateway applies them live), the state file (`settings:`) and PATCH /settings.
 *
 * A static membership names its port as the operator knows it: `member:NAME` (the member's WireGuard peer, and
 * its OpenVPN session while one is up), `site:NAME` (an IPsec site with multicast ranges) or `lan` (the IGMP
 * proxy's LAN interface). A name that does not exist (yet) is kept and applies once it does.
 */
import { invalid } from './errors.js';
import { formatAddress, parseAddress } from '../net/ip.js';
import {
  DEFAULT_LAST_MEMBER_QUERY_INTERVAL_MS,
  DEFAULT_QUERY_INTERVAL_MS,
  DEFAULT_QUERY_RESPONSE_INTERVAL_MS,
  DEFAULT_ROBUSTNESS,
} from '../multicast/constants.js';
import { isMulticast } from '../multicast/messages.js';

export interface MulticastQuerierSettings {
  /** Robustness variable (RFC 3376 §8.1): 1..7 (the QRV field has 3 bits, §4.1.6). */
  readonly robustness: number;
  /** Seconds between general queries (§8.2): 1..31744 (the largest QQIC, §4.1.7). */
  readonly queryIntervalS: number;
  /** Max response time of general queries (§8.3), seconds in tenths: 0.1..3174.4, below queryIntervalS. */
  readonly queryResponseIntervalS: number;
  /** Max response time of group-specific queries and their spacing (§8.8), seconds in tenths: 0.1..3174.4. */
  readonly lastMemberQueryIntervalS: number;
}

export const MULTICAST_QUERIER_DEFAULTS: MulticastQuerierSettings = {
  robustness: DEFAULT_ROBUSTNESS,
  queryIntervalS: DEFAULT_QUERY_INTERVAL_MS / 1000,
  queryResponseIntervalS: DEFAULT_QUERY_RESPONSE_INTERVAL_MS / 1000,
  lastMemberQueryIntervalS: DEFAULT_LAST_MEMBER_QUERY_INTERVAL_MS / 1000,
};

export interface MulticastStaticMembership {
  /** `member:NAME`, `site:NAME` or `lan`. */
  readonly port: string;
  /** A group address, canonical text ("239.1.1.1", "ff15::1"). */
  readonly group: string;
}

/** Static memberships at most (each is a table entry in every running gateway). */
export const MAX_STATIC_MEMBERSHIPS = 1024;

const QUERIER_KEYS = Object.keys(MULTICAST_QUERIER_DEFAULTS) as (keyof MulticastQuerierSettings)[];
/** The Max Resp Code / QQIC encodings' largest values (RFC 3376 §4.1.1, §4.1.7): 31744 (1/10 s for responses). */
const MAX_CODE = 31_744;

function tenths(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw invalid(field, `must be a number of seconds (${min} to ${max})`);
  const rounded = Math.round(value * 10) / 10;
  if (Math.abs(rounded - value) > 1e-9) throw invalid(field, 'must be in tenths of a second');
  if (rounded < min || rounded > max) throw invalid(field, `must be from ${min} to ${max} seconds`);
  return rounded;
}

function whole(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw invalid(field, `must be a whole number from ${min} to ${max}`);
  return value;
}

/**
 * The querier's timers: `value` (any subset of the keys) over `current`. Undefined or null keeps `current`.
 * Throws naming the field (`multicastQuerier.queryIntervalS`).
 */
export function multicastQuerierSettings(
  field: string,
  value: unknown,
  current: MulticastQuerierSettings,
): MulticastQuerierSettings {
  if (value === undefined || value === null) return current;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(field, 'must be an object');
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (!(QUERIER_KEYS as string[]).includes(key))
      throw invalid(`${field}.${key}`, `is not a querier setting (${QUERIER_KEYS.join(', ')})`);
  const next: MulticastQuerierSettings = {
    robustness:
      o['robustness'] === undefined
        ? current.robustness
        : whole(`${field}.robustness`, o['robustness'], 1, 7),
    queryIntervalS:
      o['queryIntervalS'] === undefined
        ? current.queryIntervalS
        : whole(`${field}.queryIntervalS`, o['queryIntervalS'], 1, MAX_CODE),
    queryResponseIntervalS:
      o['queryResponseIntervalS'] === undefined
        ? current.queryResponseIntervalS
        : tenths(`${field}.queryResponseIntervalS`, o['queryResponseIntervalS'], 0.1, MAX_CODE / 10),
    lastMemberQueryIntervalS:
      o['lastMemberQueryIntervalS'] === undefined
        ? current.lastMemberQueryIntervalS
        : tenths(`${field}.lastMemberQueryIntervalS`, o['lastMemberQueryIntervalS'], 0.1, MAX_CODE / 10),
  };
  // RFC 3376 §8.3: "the number of seconds represented by the [Query Response Interval] must be less than the
  // [Query Interval]".
  if (next.queryResponseIntervalS >= next.queryIntervalS)
    throw invalid(
      `${field}.queryResponseIntervalS`,
      `must be less than queryIntervalS (${next.queryResponseIntervalS} s is not below ${next.queryIntervalS} s)`,
    );
  return next;
}

/** The querier's configuration (src/multicast/querier.ts) from the settings' timers. */
export function querierConfigFrom(s: MulticastQuerierSettings | undefined): {
  robustness: number;
  queryIntervalMs: number;
  queryResponseIntervalMs: number;
  lastMemberQueryIntervalMs: number;
} {
  const t = s ?? MULTICAST_QUERIER_DEFAULTS;
  return {
    robustness: t.robustness,
    queryIntervalMs: Math.round(t.queryIntervalS * 1000),
    queryResponseIntervalMs: Math.round(t.queryResponseIntervalS * 1000),
    lastMemberQueryIntervalMs: Math.round(t.lastMemberQueryIntervalS * 1000),
  };
}

const PORT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

/** `member:NAME`, `site:NAME` or `lan`, canonical; throws naming `field`. */
export function staticPort(field: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(field, 'must be member:NAME, site:NAME or lan');
  const text = value.trim();
  if (text.toLowerCase() === 'lan') return 'lan';
  const colon = text.indexOf(':');
  const kind = colon < 0 ? '' : text.slice(0, colon).toLowerCase();
  const name = colon < 0 ? '' : text.slice(colon + 1);
  if ((kind !== 'member' && kind !== 'site') || !PORT_NAME.test(name))
    throw invalid(field, `"${text}" is not member:NAME, site:NAME or lan`);
  return `${kind}:${name}`;
}

/** A group address (224.0.0.0/4 or ff00::/8), canonical; throws naming `field`. */
export function staticGroup(field: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a multicast group address');
  const a = parseAddress(value.trim());
  if (!a.ok) throw invalid(field, `"${value}" is not an IP address`);
  if (!isMulticast(a.value.family, a.value.bytes))
    throw invalid(field, `${value} is not a multicast group (224.0.0.0/4 or ff00::/8)`);
  return formatAddress(a.value);
}

/** Static memberships: a list of {port, group}, without duplicates, ordered by port then group. */
export function multicastStatic(field: string, value: unknown): MulticastStaticMembership[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(field, 'must be a list of {port, group}');
  if (value.length > MAX_STATIC_MEMBERSHIPS)
    throw invalid(field, `holds ${value.length} entries; at most ${MAX_STATIC_MEMBERSHIPS}`);
  const seen = new Set<string>();
  const out: MulticastStaticMembership[] = [];
  value.forEach((item: unknown, i) => {
    const at = `${field}[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      throw invalid(at, 'must be an object {port, group}');
    const o = item as Record<string, unknown>;
    for (const key of Object.keys(o))
      if (key !== 'port' && key !== 'group') throw invalid(`${at}.${key}`, 'is not a key (port, group)');
    const entry = {
      port: staticPort(`${at}.port`, o['port']),
      group: staticGroup(`${at}.group`, o['group']),
    };
    const key = `${entry.port} ${entry.group}`;
    if (seen.has(key)) throw invalid(at, `${entry.port} ${entry.group} is listed twice`);
    seen.add(key);
    out.push(entry);
  });
  return out.sort(compareStatic);
}

export function compareStatic(a: MulticastStaticMembership, b: MulticastStaticMembership): number {
  return a.port < b.port ? -1 : a.port > b.port ? 1 : a.group < b.group ? -1 : a.group > b.group ? 1 : 0;
}
