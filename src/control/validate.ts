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
  type Address,
  type Prefix,
} from '../net/ip.js';
import { invalid, WeftError } from './errors.js';
import type { PolicyAction, PolicyInput, PortRange, Proto } from './model.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const INTERFACE = /^[A-Za-z0-9_=+.-]{1,15}$/;
const HOST =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export const DEFAULT_PORT = 51820;

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

export function interfaceName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !INTERFACE.test(value))
    throw invalid(field, 'must be 1–15 characters of letters, digits and _=+.-');
  return value;
}

export function text(field: string, value: unknown, max = 200): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  if (value.length > max) throw invalid(field, `must be at most ${max} characters`);
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

export function address(field: string, value: unknown): Address {
  const r = typeof value === 'string' ? parseAddress(value) : undefined;
  if (!r?.ok || value !== (value as string).trim()) throw invalid(field, 'must be an IP address');
  return r.value;
}

/** A prefix whose host bits are zero ("10.0.0.1/24" is refused: it is ambiguous as a subnet). */
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
  return p;
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
  const asAddress = parseAddress(host);
  if (!asAddress.ok && !HOST.test(host)) throw invalid(field, 'has an invalid host name');
  const text = asAddress.ok && asAddress.value.family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, text };
}

/** Dates: "2027-01-31" (the end of that day, UTC) or a full ISO 8601 instant; null/"never" clears. */
export function expiry(field: string, value: unknown): string | null {
  if (value === null || value === undefined || value === 'never' || value === '') return null;
  if (typeof value !== 'string') throw invalid(field, 'must be a date (YYYY-MM-DD) or an ISO 8601 time');
  const day = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const ms = Date.parse(day ? `${value}T23:59:59.999Z` : value);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(value))
    throw invalid(field, 'must be a date (YYYY-MM-DD) or an ISO 8601 time');
  return new Date(ms).toISOString();
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

export function policy(field: string, value: Partial<PolicyInput>): PolicyInput {
  const action = policyAction(`${field}.action`, value.action);
  const group = value.group === '*' ? '*' : name(`${field}.group`, value.group);
  const p = proto(`${field}.proto`, value.proto);
  return {
    action,
    group,
    destination: destination(`${field}.destination`, value.destination),
    proto: p,
    ports: portRange(`${field}.ports`, value.ports ?? null, p),
  };
}

export function policyText(p: PolicyInput): string {
  const ports = p.ports ? `/${p.ports.from}${p.ports.to !== p.ports.from ? `-${p.ports.to}` : ''}` : '';
  const suffix = p.proto === 'any' && !p.ports ? '' : `:${p.proto}${ports}`;
  return `${p.action} ${p.group} ${p.destination}${suffix}`;
}

export function assertFound<T>(value: T | undefined, code: WeftError['code'], what: string): T {
  if (value === undefined) throw new WeftError(code, `${what} does not exist`);
  return value;
}
