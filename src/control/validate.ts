/**
 * Validation of operator input, shared by the CLI, the REST API and `weft apply`. Each check returns the
 * canonical form or throws a WeftError naming the field, so every entry point reports the same message.
 */
import { PublicKey } from '../crypto/keys.js';
import {
  addressLength,
  formatAddress,
  formatPrefix,
  parseAddress,
  parsePrefix,
  prefixContains,
  type Address,
  type Prefix,
} from '../net/ip.js';
import { invalid, WeftError } from './errors.js';
import {
  OPENVPN_CIPHERS,
  type OpenVpnSettings,
  type PolicyAction,
  type PolicyDirection,
  type PolicyInput,
  type PortRange,
  type Proto,
} from './model.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/**
 * A subset of what the kernel takes (dev_valid_name: 1-15 bytes, not "." or "..", no "/", ":" or space):
 * no quotes or shell characters either, since the name goes into nft scripts and `ip` arguments.
 */
const INTERFACE = /^[A-Za-z0-9_=+.-]{1,15}$/;
const HOST =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/**
 * Control characters (C0, DEL, C1), line and paragraph separators, the bidirectional overrides, and
 * surrogates that are not part of a pair (a "u" regex sees only those as \p{Cs}).
 */
const CONTROL = /[\p{Cc}\p{Cs}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

export const DEFAULT_PORT = 51820;

/** Limits on lists an operator gives (each list is copied into every member config or checked per packet). */
export const LIMITS = {
  /** DNS servers in member configs (resolv.conf reads 3; a few spare for IPv6 and fallbacks). */
  dns: 8,
  /** Groups one member is in. */
  memberGroups: 64,
  /** Characters of a description. */
  description: 200,
} as const;

export function name(field: string, value: unknown): string {
  if (typeof value !== 'string' || !NAME.test(value))
    throw invalid(
      field,
      'must be 1–63 characters of letters, digits, ".", "_" or "-", starting with a letter or digit',
    );
  return value;
}

/**
 * Names a member may not take: they are paths of the REST API next to /members/{name}
 * (GET /members/next-ip would never reach a member of that name).
 */
export const RESERVED_MEMBER_NAMES: ReadonlySet<string> = new Set(['next-ip']);

export function memberName(field: string, value: unknown): string {
  const n = name(field, value);
  if (RESERVED_MEMBER_NAMES.has(n)) throw invalid(field, `"${n}" is reserved (it is a path of the REST API)`);
  return n;
}

/** A network interface name as the kernel takes it (and as nft and `ip` take it unquoted). */
export function interfaceName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !INTERFACE.test(value))
    throw invalid(field, 'must be 1–15 characters of letters, digits and _=+.-');
  if (value === '.' || value === '..') throw invalid(field, `"${value}" is not a name the kernel takes`);
  return value;
}

/** Free text (descriptions, searches): printable, well-formed Unicode, at most `max` characters. */
export function text(field: string, value: unknown, max: number = LIMITS.description): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  if (value.length > max) throw invalid(field, `must be at most ${max} characters`);
  if (CONTROL.test(value))
    throw invalid(field, 'must not contain control characters (NUL, tab, newline, ...) or broken Unicode');
  return value;
}

/** A list of at most `max` entries (an absent list is empty). */
export function list(field: string, value: unknown, max: number): readonly unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(field, 'must be a list');
  if (value.length > max) throw invalid(field, `must have at most ${max} entries`);
  return value;
}

export function bool(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalid(field, 'must be true or false');
  return value;
}

export function integer(field: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max)
    throw invalid(field, `must be an integer from ${min} to ${max}`);
  return n;
}

/** A canonical id in a path or on the command line: decimal digits, no sign, no leading zero, no "0x". */
export function id(field: string, value: unknown): number {
  const t = typeof value === 'number' ? String(value) : value;
  if (typeof t !== 'string' || !/^[1-9][0-9]{0,15}$/.test(t) || !Number.isSafeInteger(Number(t)))
    throw invalid(field, 'must be a positive whole number in decimal (as listed)');
  return Number(t);
}

export function address(field: string, value: unknown): Address {
  const r = typeof value === 'string' && !value.includes('%') ? parseAddress(value) : undefined;
  if (!r?.ok || value !== (value as string).trim()) throw invalid(field, 'must be an IP address');
  return r.value;
}

/**
 * Special-purpose ranges (RFC 6890 and the IANA IPv6 registry) that are never a subnet behind the gateway
 * nor the members' own. `local`: packets to them never leave a host or its link (loopback, link-local);
 * `none`: no unicast host has such an address (unspecified, multicast, reserved, broadcast).
 */
export const SPECIAL_RANGES: readonly {
  readonly prefix: Prefix;
  readonly text: string;
  readonly what: string;
  readonly kind: 'local' | 'none';
}[] = (
  [
    ['0.0.0.0/8', '"this network", RFC 1122 section 3.2.1.3', 'none'],
    ['127.0.0.0/8', 'loopback', 'local'],
    ['169.254.0.0/16', 'link-local', 'local'],
    ['224.0.0.0/4', 'multicast', 'none'],
    ['240.0.0.0/4', 'reserved, with the broadcast address 255.255.255.255', 'none'],
    ['::/128', 'the unspecified address', 'none'],
    ['::1/128', 'loopback', 'local'],
    ['::ffff:0:0/96', 'IPv4-mapped addresses', 'none'],
    ['fe80::/10', 'link-local', 'local'],
    ['ff00::/8', 'multicast', 'none'],
  ] as const
).map(([text, what, kind]) => {
  const r = parsePrefix(text);
  if (!r.ok) throw new Error(`bad special range ${text}`);
  return { prefix: r.value, text, what, kind };
});

/** Whether two prefixes share any address (one holds the other's first address). */
export function overlaps(a: Prefix, b: Prefix): boolean {
  return prefixContains(a, b) || prefixContains(b, a);
}

/** Refuses a prefix that covers everything or overlaps a special-purpose range. */
function unicastPrefix(field: string, p: Prefix): Prefix {
  if (p.bits === 0)
    throw invalid(
      field,
      'covers every address; a member that should send everything through the gateway gets fullTunnel',
    );
  const special = SPECIAL_RANGES.find((r) => overlaps(r.prefix, p));
  if (special) throw invalid(field, `overlaps ${special.text} (${special.what})`);
  return p;
}

/** The special range of kind `none` that holds `a`, if any. */
function notUnicast(a: Address): (typeof SPECIAL_RANGES)[number] | undefined {
  return SPECIAL_RANGES.find((r) => r.kind === 'none' && prefixContains(r.prefix, a));
}

/** An address packets can be sent to (loopback is fine: a resolver on the member's own device). */
function unicastAddress(field: string, a: Address): Address {
  const special = notUnicast(a);
  if (special) throw invalid(field, `is in ${special.text} (${special.what}), not a unicast address`);
  return a;
}

export function prefix(field: string, value: unknown): Prefix {
  if (typeof value !== 'string') throw invalid(field, 'must be a prefix such as 10.20.0.0/24');
  const r = parsePrefix(value);
  if (!r.ok || !value.includes('/')) throw invalid(field, 'must be a prefix such as 10.20.0.0/24');
  const addr = parseAddress(value.slice(0, value.indexOf('/')));
  if (addr.ok && formatAddress(addr.value) !== formatAddress(r.value))
    throw invalid(field, `has host bits set; did you mean ${formatPrefix(r.value)}?`);
  return r.value;
}

export function subnet(field: string, value: unknown, family: 4 | 6): Prefix {
  const p = prefix(field, value);
  if (p.family !== family) throw invalid(field, `must be an IPv${family} prefix`);
  const hostBits = addressLength(family) * 8 - p.bits;
  if (hostBits < 2) throw invalid(field, 'is too small: it needs room for the gateway and members');
  if (family === 4 && p.bits < 8) throw invalid(field, 'is too large (at most a /8)');
  return unicastPrefix(field, p);
}

/** A network the gateway's host is attached to, as it saw it when asked (the uplink, for route checks). */
export interface HostNetwork {
  /** The interface ("eth0"). */
  readonly interface: string;
  /** Its subnet ("192.0.2.0/24"). */
  readonly prefix: string;
}

/**
 * A shared route: a unicast prefix that is not a special-purpose range and not one of the networks the
 * gateway itself is attached to through its uplink (members' traffic there would take the wrong path, and
 * their config would route the gateway's own endpoint into the tunnel).
 */
export function routePrefix(field: string, value: unknown, uplinks: readonly HostNetwork[] = []): Prefix {
  const p = unicastPrefix(field, prefix(field, value));
  for (const u of uplinks) {
    const r = parsePrefix(u.prefix);
    if (r.ok && overlaps(r.value, p))
      throw invalid(field, `overlaps ${u.prefix}, the gateway's uplink network (${u.interface})`);
  }
  return p;
}

/** A DNS server for member configs: a unicast address. */
export function dnsServer(field: string, value: unknown): string {
  return formatAddress(unicastAddress(field, address(field, value)));
}

/** The DNS servers of the settings: at most LIMITS.dns, no duplicates. */
export function dnsServers(field: string, value: unknown): string[] {
  const out = list(field, value, LIMITS.dns).map((d, i) => dnsServer(`${field}[${i}]`, d));
  const dup = out.findIndex((d, i) => out.indexOf(d) !== i);
  if (dup >= 0) throw invalid(`${field}[${dup}]`, `${out[dup]} is listed twice`);
  return out;
}

export function publicKey(field: string, value: unknown): string {
  const r = typeof value === 'string' ? PublicKey.parse(value) : undefined;
  if (!r?.ok) throw invalid(field, 'must be a WireGuard public key (44 characters of base64)');
  if (r.key.isZero()) throw invalid(field, 'must not be the all-zero key');
  return r.key.toBase64();
}

/** "HOST[:PORT]", "[v6]:PORT" or a bare IPv6 address; returns the host and port. */
export function endpoint(field: string, value: unknown): { host: string; port: number; text: string } {
  if (typeof value !== 'string' || value.length === 0) throw invalid(field, 'must be HOST[:PORT]');
  let host = value;
  let port = DEFAULT_PORT;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = integer(field, bracket[2], 1, 65535);
  } else if ((value.match(/:/g) ?? []).length === 1) {
    host = value.slice(0, value.indexOf(':'));
    port = integer(field, value.slice(value.indexOf(':') + 1), 1, 65535);
  }
  const asAddress = host.includes('%') ? undefined : parseAddress(host);
  // A name whose last label is all digits is a mistyped address ("10.0.0.300"), not a host name (RFC 3696 section 2).
  if (!asAddress?.ok && (!HOST.test(host) || /(^|\.)\d+$/.test(host)))
    throw invalid(field, 'has an invalid host name');
  if (asAddress?.ok) unicastAddress(field, asAddress.value);
  const text = asAddress?.ok && asAddress.value.family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, text };
}

/**
 * Where the REST API listens: an IP address (or "localhost") and a port, both required, since a host name
 * would need the resolver at boot and the port has no default a client could guess. "0.0.0.0" and "::"
 * (every address) are fine here.
 */
export function listenAddress(field: string, value: unknown): string {
  const form = 'must be ADDRESS:PORT, e.g. 127.0.0.1:8780 or [::1]:8780';
  if (typeof value !== 'string') throw invalid(field, form);
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(value);
  if (!m) throw invalid(field, form);
  const host = m[1] ?? m[2]!;
  const port = integer(field, m[3], 1, 65535);
  if (host === 'localhost') return `${host}:${port}`;
  const a = host.includes('%') ? undefined : parseAddress(host);
  if (!a?.ok) throw invalid(field, `${form} (the host must be an IP address or localhost)`);
  if (m[1] !== undefined && a.value.family !== 6) throw invalid(field, form);
  if (m[2] !== undefined && a.value.family !== 4)
    throw invalid(field, `${form} (an IPv6 address in brackets)`);
  const unspecified = a.value.bytes.every((b) => b === 0);
  const special = unspecified ? undefined : notUnicast(a.value);
  if (special) throw invalid(field, `is in ${special.text} (${special.what}): nothing can listen there`);
  const canonical = formatAddress(a.value);
  return a.value.family === 6 ? `[${canonical}]:${port}` : `${canonical}:${port}`;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/**
 * A calendar date "YYYY-MM-DD" (then `endOfDay` says which end of it, UTC) or an ISO 8601 / RFC 3339
 * instant with its offset ("2027-01-31T18:00:00Z", "...+02:00"). Every part is checked against the
 * calendar: Date.parse alone takes "2027-02-30" and silently means March 2nd. Years 1970-9999.
 */
export function instant(field: string, value: unknown, endOfDay = false): Date {
  const form = 'must be a date (YYYY-MM-DD) or an ISO 8601 time with its offset (2027-01-31T18:00:00Z)';
  if (typeof value !== 'string') throw invalid(field, form);
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?$/.exec(
      value,
    );
  if (!m) throw invalid(field, form);
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (year < 1970) throw invalid(field, 'must be in 1970 or later');
  if (month < 1 || month > 12) throw invalid(field, `has no month ${m[2]}`);
  const days = month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > days) throw invalid(field, `has no day ${m[3]} in ${m[1]}-${m[2]}`);
  if (m[4] === undefined) {
    const ms = Date.UTC(year, month - 1, day);
    return new Date(endOfDay ? ms + 86_400_000 - 1 : ms);
  }
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), Number(m[6] ?? 0)];
  if (hour > 23 || minute > 59 || second > 59)
    throw invalid(field, `has no time ${m[4]}:${m[5]}:${m[6] ?? '00'}`);
  const zone = m[8]!;
  if (zone.length > 1 && (Number(zone.slice(1, 3)) > 23 || Number(zone.slice(4, 6)) > 59))
    throw invalid(field, `has no offset ${zone}`);
  const ms = Date.parse(
    `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? '00'}${m[7] ?? ''}${zone.toUpperCase()}`,
  );
  if (Number.isNaN(ms)) throw invalid(field, form);
  return new Date(ms);
}

/** Dates: "2027-01-31" (the end of that day, UTC) or a full ISO 8601 instant; null/"never" clears. */
export function expiry(field: string, value: unknown): string | null {
  if (value === null || value === undefined || value === 'never' || value === '') return null;
  return instant(field, value, true).toISOString();
}

export function policyAction(field: string, value: unknown): PolicyAction {
  if (value !== 'allow' && value !== 'deny') throw invalid(field, 'must be "allow" or "deny"');
  return value;
}

const PROTOS: readonly Proto[] = ['any', 'tcp', 'udp', 'icmp'];

/**
 * A policy destination as the CLI takes it: DEST[:PROTO[/PORT[-PORT]]], where DEST is a prefix, a single
 * address, "group:NAME" or "any". IPv6 prefixes contain colons, so only a trailing ":tcp…" part counts.
 */
export function destinationSpec(
  field: string,
  value: unknown,
): { destination: string; proto: Proto; ports: PortRange | null } {
  if (typeof value !== 'string' || value.length === 0)
    throw invalid(field, 'must be a prefix, "group:NAME" or "any", optionally followed by :PROTO[/PORT]');
  const m = /^(.*):(any|tcp|udp|icmp)(?:\/(\d+)(?:-(\d+))?)?$/.exec(value);
  const dest = m ? m[1]! : value;
  const proto = m ? (m[2] as Proto) : 'any';
  let ports: PortRange | null = null;
  if (m?.[3] !== undefined) {
    const from = integer(field, m[3], 1, 65535);
    const to = m[4] === undefined ? from : integer(field, m[4], 1, 65535);
    ports = portRange(field, { from, to }, proto);
  }
  return { destination: destination(field, dest), proto, ports };
}

export function destination(field: string, value: unknown): string {
  if (value === 'any') return 'any';
  if (typeof value === 'string' && value.startsWith('group:')) return `group:${name(field, value.slice(6))}`;
  if (typeof value === 'string' && !value.includes('/')) {
    const a = address(field, value);
    return `${formatAddress(a)}/${addressLength(a.family) * 8}`;
  }
  return formatPrefix(prefix(field, value));
}

export function proto(field: string, value: unknown): Proto {
  if (value === undefined) return 'any';
  if (typeof value !== 'string' || !PROTOS.includes(value as Proto))
    throw invalid(field, `must be one of ${PROTOS.join(', ')}`);
  return value as Proto;
}

export function portRange(field: string, value: unknown, p: Proto): PortRange | null {
  if (value === null || value === undefined) return null;
  if (p !== 'tcp' && p !== 'udp') throw invalid(field, 'ports need the protocol tcp or udp');
  const v = value as { from?: unknown; to?: unknown };
  const from = integer(`${field}.from`, v.from, 1, 65535);
  const to = integer(`${field}.to`, v.to ?? from, 1, 65535);
  if (to < from) throw invalid(field, 'the range ends before it starts');
  return { from, to };
}

export function policyDirection(field: string, value: unknown): PolicyDirection {
  if (value === undefined || value === null) return 'send';
  if (value !== 'send' && value !== 'receive') throw invalid(field, 'must be "send" or "receive"');
  return value;
}

/** Whether a canonical destination is "any" or a prefix inside 224.0.0.0/4 or ff00::/8. */
function multicastDestination(destination: string): boolean {
  if (destination === 'any') return true;
  const p = parsePrefix(destination);
  if (!p.ok) return false;
  const { family, bytes, bits } = p.value;
  return family === 4 ? bits >= 4 && (bytes[0]! & 0xf0) === 0xe0 : bits >= 8 && bytes[0] === 0xff;
}

export function policy(field: string, value: Partial<PolicyInput>): PolicyInput {
  const action = policyAction(`${field}.action`, value.action);
  const group = value.group === '*' ? '*' : name(`${field}.group`, value.group);
  const p = proto(`${field}.proto`, value.proto);
  const direction = policyDirection(`${field}.direction`, value.direction);
  const dest = destination(`${field}.destination`, value.destination);
  // A receive rule names the groups copies may come from: multicast ranges only.
  if (direction === 'receive' && !multicastDestination(dest))
    throw invalid(
      `${field}.destination`,
      `a receive rule takes a multicast range (inside 224.0.0.0/4 or ff00::/8) or "any", not ${dest}`,
    );
  return {
    action,
    group,
    destination: dest,
    proto: p,
    ports: portRange(`${field}.ports`, value.ports ?? null, p),
    direction,
  };
}

/** "allow eng 10.20.0.0/24:tcp/443"; a receive rule ends in " receive" ("allow eng 239.1.0.0/16 receive"). */
export function policyText(p: PolicyInput): string {
  return `${p.action} ${p.group} ${policyTarget(p)}${p.direction === 'receive' ? ' receive' : ''}`;
}

/** The destination with its protocol and ports as the CLI and state files write it ("10.20.0.0/24:tcp/443"). */
export function policyTarget(p: PolicyInput): string {
  const ports = p.ports ? `/${p.ports.from}${p.ports.to !== p.ports.from ? `-${p.ports.to}` : ''}` : '';
  const suffix = p.proto === 'any' && !p.ports ? '' : `:${p.proto}${ports}`;
  return `${p.destination}${suffix}`;
}

export function assertFound<T>(value: T | undefined, code: WeftError['code'], what: string): T {
  if (value === undefined) throw new WeftError(code, `${what} does not exist`);
  return value;
}

/**
 * The `openvpn` section of the settings: a full one, or changes to `current` (only the keys given). Errors
 * name the field as `openvpn.udpPort`, `openvpn.dataCiphers[1]`, ... (`field` is the section's own name).
 */
export function openVpnSettings(field: string, value: unknown, current: OpenVpnSettings): OpenVpnSettings {
  if (value === undefined || value === null) return current;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(field, 'must be an object');
  const o = value as Record<string, unknown>;
  const known = ['udpPort', 'tcpPort', 'dataCiphers', 'renegSec', 'certificateDays'];
  for (const key of Object.keys(o))
    if (!known.includes(key))
      throw invalid(`${field}.${key}`, `is not an OpenVPN setting (${known.join(', ')})`);
  const port = (key: 'udpPort' | 'tcpPort'): number | null => {
    const given = o[key];
    if (given === undefined) return current[key];
    if (given === null || given === false || given === 'off') return null;
    return integer(`${field}.${key}`, given, 1, 65535);
  };
  let dataCiphers = current.dataCiphers;
  if (o['dataCiphers'] !== undefined) {
    const items = list(`${field}.dataCiphers`, o['dataCiphers'], OPENVPN_CIPHERS.length);
    if (items.length === 0) throw invalid(`${field}.dataCiphers`, 'must name at least one cipher');
    dataCiphers = items.map((c, i) => {
      const at = `${field}.dataCiphers[${i}]`;
      const upper = typeof c === 'string' ? c.toUpperCase() : undefined;
      const cipher = OPENVPN_CIPHERS.find((k) => k === upper);
      if (cipher === undefined) throw invalid(at, `must be one of ${OPENVPN_CIPHERS.join(', ')}`);
      return cipher;
    });
    if (new Set(dataCiphers).size !== dataCiphers.length)
      throw invalid(`${field}.dataCiphers`, 'names a cipher twice');
  }
  return {
    udpPort: port('udpPort'),
    tcpPort: port('tcpPort'),
    dataCiphers,
    renegSec:
      o['renegSec'] === undefined
        ? current.renegSec
        : integer(`${field}.renegSec`, o['renegSec'], 0, 604_800),
    certificateDays:
      o['certificateDays'] === undefined
        ? current.certificateDays
        : integer(`${field}.certificateDays`, o['certificateDays'], 1, 3650),
  };
}
