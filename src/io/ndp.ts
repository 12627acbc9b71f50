/**
 * Unsolicited Neighbour Advertisements (RFC 4861 §7.2.6): the IPv6 counterpart of a gratuitous ARP (arp.ts).
 * An IPv6 address that moved to this host is advertised to all nodes on its link, with the Override flag, so
 * the neighbours' caches send to this host's hardware address at once instead of to the old holder's until
 * their entries fail Neighbour Unreachability Detection (reachable time 15–45 s, then 5 s of delay and probes).
 *
 * The packet (RFC 4861 §4.4): an IPv6 header (hop limit 255, which receivers require, §7.1.2) from the address
 * to ff02::1, then the ICMPv6 Neighbor Advertisement — type 136, code 0, flags Router 0 (the gateway is not the
 * link's router for the neighbours), Solicited 0 (nobody asked), Override 1 (replace the cached hardware
 * address, §7.2.5) — its target the address, and the Target Link-Layer Address option with this host's MAC.
 * Linux updates an existing entry from it (to STALE with the new address, which it then uses); it creates none
 * for an address it was not talking to, which is harmless. The packet leaves whole through an AF_PACKET datagram
 * socket to 33:33:00:00:00:01 (RFC 2464 §7: the Ethernet address of ff02::1), so it needs no raw IPv6 socket
 * bound to an address that may still be settling, only CAP_NET_RAW.
 */
import { hardwareAddress } from './arp.js';
import { icmpv6Checksum } from '../net/checksum.js';
import { sendOnLink } from './packet-socket.js';

/** RFC 4443 / 4861 numbers. */
const IPPROTO_ICMPV6 = 58;
export const ND_NEIGHBOR_ADVERTISEMENT = 136;
/** RFC 4861 §4.4: the flags are the top bits of the word after the checksum. */
export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;
/** RFC 4861 §4.6.1: Target Link-Layer Address option, length in units of 8 bytes. */
const ND_OPT_TARGET_LINKADDR = 2;
/** RFC 4861 §7.1.2: a receiver drops an ND message whose hop limit is not 255. */
const ND_HOP_LIMIT = 255;
/** EtherType of IPv6, also the packet socket's protocol. */
export const ETH_P_IPV6 = 0x86dd;
/** ff02::1, all nodes on the link (RFC 4291 §2.7.1). */
export const ALL_NODES = Uint8Array.from([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
/** RFC 2464 §7: 33:33 then the last four bytes of the group. */
const ALL_NODES_MAC = Uint8Array.from([0x33, 0x33, 0, 0, 0, 1]);
const IPV6_HEADER_SIZE = 40;
const NA_SIZE = 24;
const OPTION_SIZE = 8;
export const NA_PACKET_SIZE = IPV6_HEADER_SIZE + NA_SIZE + OPTION_SIZE;

/**
 * The 72-byte IPv6 packet of an unsolicited Neighbour Advertisement of `address` (16 bytes) from the interface
 * with hardware address `mac`: source the address itself, destination ff02::1, flags Override only.
 */
export function unsolicitedNeighbourAdvertisement(mac: Uint8Array, address: Uint8Array): Uint8Array {
  if (mac.length !== 6) throw new RangeError(`NDP: a hardware address has 6 bytes (got ${mac.length})`);
  if (address.length !== 16)
    throw new RangeError(`NDP: an IPv6 address has 16 bytes (got ${address.length})`);
  const p = new Uint8Array(NA_PACKET_SIZE);
  const v = new DataView(p.buffer);
  v.setUint32(0, 0x60000000); // version 6, traffic class 0, flow label 0
  v.setUint16(4, NA_SIZE + OPTION_SIZE);
  p[6] = IPPROTO_ICMPV6;
  p[7] = ND_HOP_LIMIT;
  p.set(address, 8);
  p.set(ALL_NODES, 24);
  const m = p.subarray(IPV6_HEADER_SIZE);
  m[0] = ND_NEIGHBOR_ADVERTISEMENT;
  m[1] = 0; // code
  m[4] = NA_FLAG_OVERRIDE;
  m.set(address, 8); // target address
  m[24] = ND_OPT_TARGET_LINKADDR;
  m[25] = OPTION_SIZE / 8;
  m.set(mac, 26);
  v.setUint16(IPV6_HEADER_SIZE + 2, icmpv6Checksum(address, ALL_NODES, m));
  return p;
}

/**
 * Sends `count` unsolicited Neighbour Advertisements of `address` (16 bytes) on `ifname`. Returns false, sending
 * nothing, when the interface has no Ethernet address. Throws with the system's message when the socket cannot
 * be opened or a send fails.
 */
export async function advertiseAddress(
  ifname: string,
  address: Uint8Array,
  count = 1,
  /** The interface's hardware address when the caller knows it (saves asking `ip`). */
  known?: Uint8Array,
): Promise<boolean> {
  const mac = known ?? (await hardwareAddress(ifname));
  if (mac === undefined) return false;
  sendOnLink(
    'NDP',
    ifname,
    ETH_P_IPV6,
    ALL_NODES_MAC,
    unsolicitedNeighbourAdvertisement(mac, address),
    count,
  );
  return true;
}
