/**
 * The few facts the data plane reads from an inner IP packet: version, addresses and the length the
 * header claims (RFC 791 §3.1, RFC 8200 §3). Views only; nothing is copied.
 */
import type { Family } from './ip.js';

export const IPV4_HEADER_MIN = 20;
export const IPV6_HEADER_LENGTH = 40;

export interface IpHeader {
  readonly family: Family;
  /** Length of the packet as its header states it (may be shorter than the buffer: padding follows). */
  readonly length: number;
  readonly source: Uint8Array;
  readonly destination: Uint8Array;
}

/** Reads an IP header; null if the buffer is not a complete IPv4 or IPv6 packet. */
export function readIpHeader(packet: Uint8Array): IpHeader | null {
  if (packet.length < 1) return null;
  const version = packet[0]! >> 4;
  if (version === 4) {
    if (packet.length < IPV4_HEADER_MIN) return null;
    const length = (packet[2]! << 8) | packet[3]!;
    const ihl = (packet[0]! & 0x0f) * 4;
    if (length < ihl || ihl < IPV4_HEADER_MIN || length > packet.length) return null;
    return { family: 4, length, source: packet.subarray(12, 16), destination: packet.subarray(16, 20) };
  }
  if (version === 6) {
    if (packet.length < IPV6_HEADER_LENGTH) return null;
    const length = IPV6_HEADER_LENGTH + ((packet[4]! << 8) | packet[5]!);
    if (length > packet.length) return null;
    return { family: 6, length, source: packet.subarray(8, 24), destination: packet.subarray(24, 40) };
  }
  return null;
}
