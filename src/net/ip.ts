/**
 * IP addresses and prefixes as bytes. Parsing returns a typed result; nothing here throws on bad input.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Address {
  readonly family: Family;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

export interface Prefix extends Address {
  /** Prefix length in bits; host bits of `bytes` are zero. */
  readonly bits: number;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function addressLength(family: Family): number {
  return family === 4 ? 4 : 16;
}

function parseV4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

function parseV6(text: string): Uint8Array {
  let body = text.split('%')[0]!;
  const lastColon = body.lastIndexOf(':');
  const last = body.slice(lastColon + 1);
  if (last.includes('.')) {
    // An embedded IPv4 address (RFC 4291 §2.2, form 3) stands for the last two 16-bit groups.
    const v4 = parseV4(last);
    const hi = ((v4[0]! << 8) | v4[1]!).toString(16);
    const lo = ((v4[2]! << 8) | v4[3]!).toString(16);
    body = `${body.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = body.indexOf('::');
  const head = groups(gap < 0 ? body : body.slice(0, gap));
  const rest = gap < 0 ? [] : groups(body.slice(gap + 2));
  const words = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

export function parseAddress(text: string): ParseResult<Address> {
  const t = text.trim();
  if (isIPv4(t)) return { ok: true, value: { family: 4, bytes: parseV4(t) } };
  if (isIPv6(t)) return { ok: true, value: { family: 6, bytes: parseV6(t) } };
  return { ok: false, error: `not an IP address: ${JSON.stringify(text)}` };
}

/** Zeroes every bit after the first `bits`. */
export function maskBytes(bytes: Uint8Array, bits: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i] = out[i]! & ((0xff00 >> keep) & 0xff);
  }
  return out;
}

/** Parses "ADDR/BITS" (or a bare address as a host prefix); host bits are cleared, as `wg` does. */
export function parsePrefix(text: string): ParseResult<Prefix> {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = parseAddress(slash < 0 ? t : t.slice(0, slash));
  if (!addr.ok) return addr;
  const max = addressLength(addr.value.family) * 8;
  let bits = max;
  if (slash >= 0) {
    const b = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b) || Number(b) > max)
      return { ok: false, error: `bad prefix length in ${JSON.stringify(text)}` };
    bits = Number(b);
  }
  return { ok: true, value: { family: addr.value.family, bytes: maskBytes(addr.value.bytes, bits), bits } };
}

export function formatAddress(a: Address): string {
  const b = a.bytes;
  if (a.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  // RFC 5952 §5: an IPv4-mapped address keeps its IPv4 part in dotted form.
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952 §4.2: compress the longest run of two or more zero words, the first if tied.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

export function formatPrefix(p: Prefix): string {
  return `${formatAddress(p)}/${p.bits}`;
}

export function sameAddress(a: Address, b: Address): boolean {
  if (a.family !== b.family) return false;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false;
  return true;
}

// Prefix arithmetic, on any family (BigInt: IPv6 host numbers exceed 2^53).

function toBig(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function fromBig(n: bigint, family: 4 | 6): Address {
  const len = addressLength(family);
  const bytes = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return { family, bytes };
}

function hostBits(p: Prefix): bigint {
  return BigInt(addressLength(p.family) * 8 - p.bits);
}

/** Whether `a` lies inside `p`. */
export function prefixContains(p: Prefix, a: Address): boolean {
  if (p.family !== a.family) return false;
  return toBig(a.bytes) >> hostBits(p) === toBig(p.bytes) >> hostBits(p);
}

/** The host number of `a` inside `p` (0 is the network address). */
export function hostNumber(p: Prefix, a: Address): bigint {
  return toBig(a.bytes) - toBig(p.bytes);
}

/** The address with host number `host` inside `p`. */
export function hostAddress(p: Prefix, host: bigint): Address {
  return fromBig(toBig(p.bytes) + host, p.family);
}
