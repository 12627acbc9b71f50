/**
 * The traffic selectors an IPsec site's multicast group ranges add to its CHILD SA, on both sides (ours:
 * our subnets and these; its: its subnets and these). ESP carries only what the selectors hold (RFC 4301
 * §4.4.1), so besides the ranges themselves the SA needs what the gateway needs to be the querier of the
 * site:
 * - with an IPv4 range, IGMP's own destinations (RFC 3376 §6): its general queries to 224.0.0.1, and the
 *   site hosts' IGMPv3 reports to 224.0.0.22 and IGMPv2 leaves to 224.0.0.2;
 * - with an IPv6 range, MLD's (RFC 3810 §6): general queries to ff02::1, MLDv2 reports to ff02::16, MLDv1
 *   done to ff02::2, and the link-local prefix fe80::/64 that MLD is sent from on both sides (the gateway's
 *   queries from fe80::1, the far end's reports from its tunnel interface's link-local address).
 * Group-specific queries and IGMPv2/MLDv1 reports go to the group, inside the ranges already. A selector a
 * range already holds is not added again.
 */
import { parsePrefix, type Prefix } from '../net/ip.js';
import {
  IGMP_ALL_ROUTERS,
  IGMP_ALL_SYSTEMS,
  IGMP_V3_REPORTS,
  MLD_ALL_NODES,
  MLD_ALL_ROUTERS,
  MLD_SOURCES,
  MLD_V2_REPORTS,
} from './constants.js';
import type { Family } from './messages.js';

const IGMP_SELECTORS = [IGMP_ALL_SYSTEMS, IGMP_ALL_ROUTERS, IGMP_V3_REPORTS].map((a) => `${a}/32`);
const MLD_SELECTORS = [
  ...[MLD_ALL_NODES, MLD_ALL_ROUTERS, MLD_V2_REPORTS].map((a) => `${a}/128`),
  MLD_SOURCES,
];

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

/** Whether the ranges hold an IPv6 group range: the site is then queried over IPv6 (MLD). */
export function siteHasIpv6Groups(ranges: readonly string[]): boolean {
  return ranges.some((r) => r.includes(':'));
}

/** The families a site with these group ranges is queried in. */
export function siteQueryFamilies(ranges: readonly string[]): Family[] {
  return [
    ...(siteHasIpv4Groups(ranges) ? [4 as const] : []),
    ...(siteHasIpv6Groups(ranges) ? [6 as const] : []),
  ];
}

/**
 * The selectors for a site's group ranges: the ranges, then IGMP's selectors (with an IPv4 range) and MLD's
 * (with an IPv6 range) that no range holds yet. Nothing when there are no ranges.
 */
export function siteGroupSelectors(ranges: readonly string[]): string[] {
  const held = ranges.map((r) => parsePrefix(r)).flatMap((p) => (p.ok ? [p.value] : []));
  const extra = [
    ...(siteHasIpv4Groups(ranges) ? IGMP_SELECTORS : []),
    ...(siteHasIpv6Groups(ranges) ? MLD_SELECTORS : []),
  ].filter((d) => {
    const p = parsePrefix(d);
    return p.ok && !held.some((h) => covers(h, p.value));
  });
  return [...ranges, ...extra];
}
