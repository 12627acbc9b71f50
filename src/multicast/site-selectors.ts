/**
 * The traffic selectors an IPsec site's multicast group ranges add to its CHILD SA, on both sides (ours:
 * our subnets and these; its: its subnets and these). ESP carries only what the selectors hold (RFC 4301
 * §4.4.1), so besides the ranges themselves the SA needs IGMP's own destinations for the gateway to be the
 * querier of the site (RFC 3376 §6): its general queries to 224.0.0.1, and the site hosts' IGMPv3 reports to
 * 224.0.0.22 and IGMPv2 leaves to 224.0.0.2. Group-specific queries and IGMPv2 reports go to the group,
 * inside the ranges already.
 *
 * IPv6 ranges add nothing: MLD is sent from link-local addresses (RFC 3810 §5), which a site's selectors
 * do not carry, so sites are queried over IPv4 only.
 */
import { parsePrefix, type Prefix } from '../net/ip.js';
import { IGMP_ALL_ROUTERS, IGMP_ALL_SYSTEMS, IGMP_V3_REPORTS } from './constants.js';

const IGMP_DESTINATIONS = [IGMP_ALL_SYSTEMS, IGMP_ALL_ROUTERS, IGMP_V3_REPORTS].map((a) => `${a}/32`);

/** Whether `outer` holds all of `inner` (same family). */
function covers(outer: Prefix, inner: Prefix): boolean {
  if (outer.family !== inner.family || outer.bits > inner.bits) return false;
  for (let i = 0; i < outer.bits; i++) {
    const m = 0x80 >> (i & 7);
    if ((outer.bytes[i >> 3]! & m) !== (inner.bytes[i >> 3]! & m)) return false;
  }
  return true;
}

/** Whether the ranges hold an IPv4 group range: the site is then queried over IPv4 (IGMP). */
export function siteHasIpv4Groups(ranges: readonly string[]): boolean {
  return ranges.some((r) => !r.includes(':'));
}

/**
 * The selectors for a site's group ranges: the ranges, then IGMP's destinations that no range holds yet
 * (only where an IPv4 range is given). Nothing when there are no ranges.
 */
export function siteGroupSelectors(ranges: readonly string[]): string[] {
  if (!siteHasIpv4Groups(ranges)) return [...ranges];
  const held = ranges.map((r) => parsePrefix(r)).flatMap((p) => (p.ok ? [p.value] : []));
  const extra = IGMP_DESTINATIONS.filter((d) => {
    const p = parsePrefix(d);
    return p.ok && !held.some((h) => covers(h, p.value));
  });
  return [...ranges, ...extra];
}
