/**
 * Address plans for the people VPN: the gateway takes a subnet's first host address, members get fixed
 * addresses from the rest. A member's IPv6 address carries the same host number as its IPv4 address
 * (10.66.0.10 ↔ fd66::a), so the two never disagree and need no second allocation.
 */
import {
  addressLength,
  formatAddress,
  hostAddress,
  hostNumber,
  prefixContains,
  type Address,
  type Prefix,
} from '../net/ip.js';

export function gatewayAddress(p: Prefix): Address {
  return hostAddress(p, 1n);
}

/** Host numbers members may hold: from 2 up to the last before the IPv4 broadcast address. */
export function memberHostRange(p: Prefix): { first: bigint; last: bigint } {
  const size = 1n << BigInt(addressLength(p.family) * 8 - p.bits);
  return { first: 2n, last: p.family === 4 ? size - 2n : size - 1n };
}

/** Whether `a` is an address a member may be given in `p` (not the network, gateway or broadcast). */
export function isMemberAddress(p: Prefix, a: Address): boolean {
  if (!prefixContains(p, a)) return false;
  const h = hostNumber(p, a);
  const { first, last } = memberHostRange(p);
  return h >= first && h <= last;
}

/**
 * A free member address: the first one from host number `start` on (wrapping around once) that `used`
 * says is free. Returns the address and its host number, or undefined when the subnet is full. Callers
 * keep `start` just past their last allocation, so allocating many in a row probes each address once.
 */
export function allocate(
  p: Prefix,
  used: (address: string) => boolean,
  start: bigint = memberHostRange(p).first,
  maxProbes = 1 << 20,
): { address: string; host: bigint } | undefined {
  const { first, last } = memberHostRange(p);
  const from = start >= first && start <= last ? start : first;
  let h = from;
  for (let probes = 0; probes < maxProbes; probes++) {
    const address = formatAddress(hostAddress(p, h));
    if (!used(address)) return { address, host: h };
    h = h === last ? first : h + 1n;
    if (h === from) return undefined;
  }
  return undefined;
}

/** The IPv6 address with the same host number as `v4` has in `subnet`. */
export function pairedIp6(subnet: Prefix, subnet6: Prefix, v4: Address): string {
  return formatAddress(hostAddress(subnet6, hostNumber(subnet, v4)));
}
