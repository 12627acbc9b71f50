/** ICMP and ICMPv6 echo packets (RFC 792, RFC 4443) with correct checksums: the demo and the tests ping with them. */
import { parseAddress } from './ip.js';

function addr(text: string): Uint8Array {
  const a = parseAddress(text);
  if (!a.ok) throw new Error(a.error);
  return a.value.bytes;
}

/** RFC 1071 one's-complement sum over the given byte ranges. */
function checksum(...parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i += 2) sum += (p[i]! << 8) | (i + 1 < p.length ? p[i + 1]! : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Checksum(p: Uint8Array): void {
  p[10] = 0;
  p[11] = 0;
  const c = checksum(p.subarray(0, 20));
  p[10] = c >> 8;
  p[11] = c & 0xff;
}

export interface Echo {
  readonly family: 4 | 6;
  readonly kind: 'request' | 'reply';
  readonly source: Uint8Array;
  readonly destination: Uint8Array;
  readonly id: number;
  readonly seq: number;
  readonly data: Uint8Array;
}

export function echo(
  kind: 'request' | 'reply',
  src: string | Uint8Array,
  dst: string | Uint8Array,
  id: number,
  seq: number,
  data: Uint8Array,
): Uint8Array {
  const s = typeof src === 'string' ? addr(src) : src;
  const d = typeof dst === 'string' ? addr(dst) : dst;
  const icmp = new Uint8Array(8 + data.length);
  icmp[4] = id >> 8;
  icmp[5] = id & 0xff;
  icmp[6] = seq >> 8;
  icmp[7] = seq & 0xff;
  icmp.set(data, 8);
  if (s.length === 4) {
    icmp[0] = kind === 'request' ? 8 : 0;
    const c = checksum(icmp);
    icmp[2] = c >> 8;
    icmp[3] = c & 0xff;
    const p = new Uint8Array(20 + icmp.length);
    p[0] = 0x45;
    p[2] = p.length >> 8;
    p[3] = p.length & 0xff;
    p[8] = 64;
    p[9] = 1;
    p.set(s, 12);
    p.set(d, 16);
    p.set(icmp, 20);
    ipv4Checksum(p);
    return p;
  }
  icmp[0] = kind === 'request' ? 128 : 129;
  const pseudo = new Uint8Array(40);
  pseudo.set(s, 0);
  pseudo.set(d, 16);
  pseudo[34] = icmp.length >> 8;
  pseudo[35] = icmp.length & 0xff;
  pseudo[39] = 58;
  const c = checksum(pseudo, icmp);
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  const p = new Uint8Array(40 + icmp.length);
  p[0] = 0x60;
  p[4] = icmp.length >> 8;
  p[5] = icmp.length & 0xff;
  p[6] = 58;
  p[7] = 64;
  p.set(s, 8);
  p.set(d, 24);
  p.set(icmp, 40);
  return p;
}

/** Reads an ICMP/ICMPv6 echo request or reply; null for anything else. */
export function readEcho(p: Uint8Array): Echo | null {
  const version = p[0]! >> 4;
  let off: number;
  let family: 4 | 6;
  let type: number;
  if (version === 4 && p[9] === 1) {
    off = (p[0]! & 0xf) * 4;
    family = 4;
    type = p[off]!;
    if (type !== 8 && type !== 0) return null;
  } else if (version === 6 && p[6] === 58) {
    off = 40;
    family = 6;
    type = p[off]!;
    if (type !== 128 && type !== 129) return null;
  } else {
    return null;
  }
  if (p.length < off + 8) return null;
  return {
    family,
    kind: type === 8 || type === 128 ? 'request' : 'reply',
    source: family === 4 ? p.subarray(12, 16) : p.subarray(8, 24),
    destination: family === 4 ? p.subarray(16, 20) : p.subarray(24, 40),
    id: (p[off + 4]! << 8) | p[off + 5]!,
    seq: (p[off + 6]! << 8) | p[off + 7]!,
    data: p.subarray(off + 8),
  };
}
