/**
 * The duplicate guard: a packet seen again within DUPLICATE_WINDOW_MS is replicated once. Two paths into the
 * overlay (a member that is also on a bridged LAN, a retransmitting tunnel) must not multiply copies.
 *
 * A packet's fingerprint is a 32-bit FNV-1a hash of its source, destination (the group), the IPv4
 * identification or the IPv6 flow label, the transport protocol and a prefix of what follows the IP header.
 * The guard is a fixed table of slots indexed by the hash, each holding the full hash and when it was seen:
 * no allocation per packet, bounded memory; a collision can at worst suppress one copy within the window.
 */
import { DUPLICATE_PREFIX_BYTES, DUPLICATE_SLOTS, DUPLICATE_WINDOW_MS } from './constants.js';

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnv(hash: number, bytes: Uint8Array, from: number, to: number): number {
  let h = hash;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  return h >>> 0;
}

/** The fingerprint of an IP packet (see above); `length` is the length its header states. */
export function fingerprint(packet: Uint8Array, length: number): number {
  let h = FNV_OFFSET;
  let payload: number;
  if (packet[0]! >> 4 === 4) {
    h = fnv(h, packet, 12, 20); // source, destination
    h = fnv(h, packet, 4, 6); // identification
    h = fnv(h, packet, 9, 10); // protocol
    payload = (packet[0]! & 0x0f) * 4;
  } else {
    h = fnv(h, packet, 8, 40); // source, destination
    h = fnv(h, packet, 1, 4); // flow label (and traffic class bits)
    h = fnv(h, packet, 6, 7); // next header
    payload = 40;
  }
  return fnv(h, packet, payload, Math.min(length, payload + DUPLICATE_PREFIX_BYTES));
}

export class DuplicateGuard {
  duplicates = 0;
  private readonly hashes: Uint32Array;
  private readonly seen: Float64Array;
  private readonly mask: number;

  constructor(
    private readonly windowMs = DUPLICATE_WINDOW_MS,
    slots = DUPLICATE_SLOTS,
  ) {
    let n = 1;
    while (n < slots) n <<= 1;
    this.hashes = new Uint32Array(n);
    this.seen = new Float64Array(n).fill(-Infinity);
    this.mask = n - 1;
  }

  /** True the first time a fingerprint is seen within the window; false (and counted) for a repeat. */
  firstTime(hash: number, now: number): boolean {
    const slot = (hash ^ (hash >>> 16)) & this.mask;
    if (this.hashes[slot] === hash && now - this.seen[slot]! < this.windowMs) {
      this.duplicates++;
      return false;
    }
    this.hashes[slot] = hash;
    this.seen[slot] = now;
    return true;
  }
}
