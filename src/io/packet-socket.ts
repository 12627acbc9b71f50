/**
 * Sending one link-layer frame's payload on an interface through an AF_PACKET datagram socket (packet(7)): the
 * kernel writes the Ethernet header from the destination given to sendto(2). Used for the announcements of an
 * address that moved to this host (arp.ts, ndp.ts). Needs CAP_NET_RAW, as the gateway's TUN device does.
 */
import * as libc from './libc.js';

const AF_PACKET = 17;
/** ARPHRD_ETHER (if_arp.h). */
const ARPHRD_ETHER = 1;
/** struct sockaddr_ll: family, protocol, ifindex, hatype, pkttype, halen, addr[8]. */
const SOCKADDR_LL_SIZE = 20;

function htons(n: number): number {
  return ((n & 0xff) << 8) | ((n >> 8) & 0xff);
}

/**
 * Sends `payload` `count` times on `ifname` as EtherType `etherType` to the Ethernet address `destination`.
 * Throws with `label` and the system's message when the interface is unknown, the socket cannot be opened or a
 * send fails.
 */
export function sendOnLink(
  label: string,
  ifname: string,
  etherType: number,
  destination: Uint8Array,
  payload: Uint8Array,
  count: number,
): void {
  const index = libc.ifNameToIndex(ifname);
  if (index === 0) throw new Error(`${label}: no interface ${ifname}`);
  const to = new Uint8Array(SOCKADDR_LL_SIZE);
  const v = new DataView(to.buffer);
  v.setUint16(0, AF_PACKET, true);
  v.setUint16(2, etherType); // network order
  v.setInt32(4, index, true);
  v.setUint16(8, ARPHRD_ETHER, true);
  to[11] = destination.length;
  to.set(destination, 12);
  // The protocol argument is in network byte order (packet(7)); this socket only sends.
  const fd = libc.socket(AF_PACKET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, htons(etherType));
  if (fd < 0) throw new Error(`${label}: packet socket: ${libc.strerror(libc.errno())}`);
  try {
    for (let i = 0; i < count; i++)
      if (libc.sendto(fd, payload, payload.length, 0, to, to.length) < 0)
        throw new Error(`${label}: sendto ${ifname}: ${libc.strerror(libc.errno())}`);
  } finally {
    libc.close(fd);
  }
}
