/**
 * Internet checksums (RFC 1071): the one's-complement sum shared by IPv4, UDP, IGMP and ICMPv6, and the ICMPv6
 * checksum over its IPv6 pseudo-header.
 */

/** IANA protocol number of ICMPv6 (the pseudo-header's next header, RFC 8200 §8.1). */
const IPPROTO_ICMPV6 = 58;

/** RFC 1071 one's-complement sum of `bytes`, added to `initial` (not yet folded or inverted). */
export function sum16(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  const n = bytes.length;
  for (let i = 0; i + 1 < n; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (n % 2 === 1) sum += bytes[n - 1]! << 8;
  return sum;
}

/** Folds a sum16 total to 16 bits and inverts it: the checksum field's value. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The Internet checksum of `bytes` (RFC 1071): 0 when verifying bytes that carry a correct one. */
export function internetChecksum(bytes: Uint8Array): number {
  return fold(sum16(bytes));
}

/** The ICMPv6 checksum of `message` between `source` and `destination` (RFC 4443 §2.3, RFC 8200 §8.1). */
export function icmpv6Checksum(source: Uint8Array, destination: Uint8Array, message: Uint8Array): number {
  let sum = sum16(source);
  sum = sum16(destination, sum);
  sum += (message.length >>> 16) & 0xffff;
  sum += message.length & 0xffff;
  sum += IPPROTO_ICMPV6;
  return fold(sum16(message, sum));
}
