/**
 * TAI64N timestamps (cr.yp.to/libtai/tai64.html) as WireGuard uses them in handshake initiations (paper
 * §5.4.2): 8 bytes of big-endian seconds since 1970 offset by 2^62 (+10 s TAI-UTC, as wireguard-go does),
 * then 4 bytes of big-endian nanoseconds. Responders reject any initiation whose timestamp is not strictly
 * greater than the last accepted one from that peer, which stops replays of captured initiations.
 */
import { TIMESTAMP_WHITENING_NS } from './constants.js';

export const TAI64N_LENGTH = 12;
const TAI64_BASE = 0x4000000000000000n + 10n;

/** Encodes a wall-clock time in milliseconds (with fraction) as TAI64N, nanoseconds whitened. */
export function tai64n(epochMs: number): Uint8Array {
  const seconds = Math.floor(epochMs / 1000);
  const nanos = Math.floor((epochMs - seconds * 1000) * 1e6);
  const whitened = nanos - (nanos % TIMESTAMP_WHITENING_NS);
  const out = new Uint8Array(TAI64N_LENGTH);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, TAI64_BASE + BigInt(seconds), false);
  v.setUint32(8, whitened, false);
  return out;
}

/** a > b, comparing as big-endian unsigned integers (TAI64N orders lexicographically). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TAI64N_LENGTH; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return x > y;
  }
  return false;
}
