/**
 * Gratuitous ARP: an address that moved to this host is announced on its link, so the neighbours' caches
 * (members on the LAN, the LAN's router) send to this host's hardware address at once instead of to the old
 * holder's until their entries time out (tens of seconds).
 *
 * The frame is an ARP Announcement (RFC 5227 §2.3): an ARP request (RFC 826) whose sender and target protocol
 * addresses are both the announced address, target hardware address zero, sent to the Ethernet broadcast
 * address. Linux updates an existing entry from it at once (a gratuitous ARP overrides the entry's locktime).
 * It leaves through an AF_PACKET datagram socket (packet-socket.ts).
 */
import { ip } from './linux-net.js';
import { sendOnLink } from './packet-socket.js';

/** RFC 826 / IANA: hardware type Ethernet, protocol type IPv4, operation request. */
const HTYPE_ETHERNET = 1;
const ETH_P_IP = 0x0800;
/** EtherType of ARP (IEEE 802 numbers), also the packet socket's protocol. */
export const ETH_P_ARP = 0x0806;
const ARPOP_REQUEST = 1;
/** The Ethernet broadcast address, where an ARP Announcement goes. */
const BROADCAST = new Uint8Array(6).fill(0xff);
export const ARP_FRAME_SIZE = 28;

/** The 28-byte ARP Announcement of `address` (IPv4, 4 bytes) from the interface with hardware address `mac`. */
export function arpAnnouncement(mac: Uint8Array, address: Uint8Array): Uint8Array {
  if (mac.length !== 6) throw new RangeError(`ARP: a hardware address has 6 bytes (got ${mac.length})`);
  if (address.length !== 4) throw new RangeError(`ARP: an IPv4 address has 4 bytes (got ${address.length})`);
  const f = new Uint8Array(ARP_FRAME_SIZE);
  const v = new DataView(f.buffer);
  v.setUint16(0, HTYPE_ETHERNET);
  v.setUint16(2, ETH_P_IP);
  f[4] = 6;
  f[5] = 4;
  v.setUint16(6, ARPOP_REQUEST);
  f.set(mac, 8); // sender hardware address
  f.set(address, 14); // sender protocol address
  // target hardware address (18..23): zero, as RFC 5227 §2.3 asks
  f.set(address, 24); // target protocol address: the same, which makes it gratuitous
  return f;
}

/** Parses `aa:bb:cc:dd:ee:ff`. */
export function parseMac(text: string): Uint8Array | undefined {
  const parts = text.trim().split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) return undefined;
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** The interface's hardware address (`ip -j link show`); undefined for one without (a TUN device). */
export async function hardwareAddress(ifname: string): Promise<Uint8Array | undefined> {
  const json = JSON.parse(await ip(['-j', 'link', 'show', 'dev', ifname])) as {
    address?: string;
    link_type?: string;
  }[];
  const link = json[0];
  if (link?.link_type !== 'ether' || link.address === undefined) return undefined;
  return parseMac(link.address);
}

/**
 * Broadcasts `count` ARP Announcements of `address` (4 bytes) on `ifname`. Returns false, sending nothing,
 * when the interface has no Ethernet address (nothing on such a link caches one). Throws with the system's
 * message when the socket cannot be opened or a send fails.
 */
export async function announceAddress(
  ifname: string,
  address: Uint8Array,
  count = 1,
  /** The interface's hardware address when the caller knows it (saves asking `ip`). */
  known?: Uint8Array,
): Promise<boolean> {
  const mac = known ?? (await hardwareAddress(ifname));
  if (mac === undefined) return false;
  sendOnLink('ARP', ifname, ETH_P_ARP, BROADCAST, arpAnnouncement(mac, address), count);
  return true;
}
