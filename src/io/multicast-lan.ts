/**
 * LanMulticastSocket: the Linux side of the IGMP and MLD proxy (RFC 4605) on one LAN interface.
 *
 * 1. Joins: IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP (struct ip_mreqn with the interface's index) on a raw
 *    socket bound to the interface (SO_BINDTODEVICE). The kernel then sends the IGMP reports on that LAN,
 *    answers its querier, and accepts datagrams to those groups arriving there.
 * 2. Receive: the same socket, raw for protocol UDP, gets each such datagram with its IPv4 header; anything
 *    not to a group, malformed or truncated is counted and skipped. Views into one arena, valid until the
 *    callback returns. Other protocols to groups (e.g. VRRP, 224.0.0.18) are link-local and stay on the LAN.
 * 3. Send: a second raw socket (IPPROTO_RAW, so IP_HDRINCL: the packet keeps the member's source address and
 *    the TTL the replicator left) with IP_MULTICAST_IF on the interface and IP_MULTICAST_LOOP off, so what
 *    the gateway sends out is not delivered back to its own receive socket.
 * IPv6 (MLD), where the interface has it:
 * 4. Joins: IPV6_ADD_MEMBERSHIP / IPV6_DROP_MEMBERSHIP (struct ipv6_mreq with the index) on a UDP socket
 *    bound to no port (it receives nothing); the kernel sends the MLD reports and answers the LAN's querier.
 * 5. Receive: a raw IPv6 socket returns no IPv6 header, so a packet socket (AF_PACKET, SOCK_DGRAM, IPv6
 *    ethertype, bound to the interface) takes the whole packet; only multicast frames (PACKET_MULTICAST, not
 *    the gateway's own outgoing ones) of UDP directly after the fixed header to a group beyond link scope
 *    are passed on, the rest counted as `ignored`.
 * 6. Send: a raw IPv6 socket of protocol IPPROTO_RAW (the header included, as for IPv4) with
 *    IPV6_MULTICAST_IF on the interface and IPV6_MULTICAST_LOOP off.
 */
import * as libc from './libc.js';
import { mainPoller, transientReadError } from './poller.js';

const IPPROTO_UDP = 17;
const IPPROTO_RAW = 255;
const SO_BINDTODEVICE = 25;
const IP_MULTICAST_IF = 32;
const IP_MULTICAST_LOOP = 34;
const IP_ADD_MEMBERSHIP = 35;
const IP_DROP_MEMBERSHIP = 36;
// linux/in6.h, linux/if_packet.h, linux/if_ether.h
const IPV6_MULTICAST_IF = 17;
const IPV6_MULTICAST_LOOP = 19;
const IPV6_ADD_MEMBERSHIP = 20;
const IPV6_DROP_MEMBERSHIP = 21;
const AF_PACKET = 17;
const ETH_P_IPV6 = 0x86dd;
const SOCKADDR_LL_SIZE = 20;
const PACKET_MULTICAST = 2;
const EAGAIN = 11;
const BATCH = 64;
const SLOT = 2048;
const MAX_PACKET = 65_535;

export class LanMulticastSocket {
  readonly counters = { received: 0, sent: 0, sendErrors: 0, malformed: 0, ignored: 0, joinErrors: 0 };
  private readonly arena = new Uint8Array(BATCH * SLOT);
  private readonly big = new Uint8Array(MAX_PACKET);
  private readonly from = new Uint8Array(libc.SOCKADDR_IN_SIZE);
  private readonly fromLength = new Uint32Array(1);
  private readonly to = new Uint8Array(libc.SOCKADDR_IN_SIZE);
  private readonly mreq = new Uint8Array(12);
  private readonly from6 = new Uint8Array(SOCKADDR_LL_SIZE);
  private readonly to6 = new Uint8Array(libc.SOCKADDR_IN6_SIZE);
  private readonly mreq6 = new Uint8Array(20);
  private closed = false;

  private constructor(
    readonly name: string,
    readonly index: number,
    private readonly rx: number,
    private readonly tx: number,
    /** IPv6: join, packet (receive) and raw (send) sockets; -1 where the kernel has no IPv6. */
    private readonly join6: number,
    private readonly rx6: number,
    private readonly tx6: number,
  ) {
    new DataView(this.to.buffer).setUint16(0, libc.AF_INET, true);
    new DataView(this.mreq.buffer).setInt32(8, index, true);
    new DataView(this.to6.buffer).setUint16(0, libc.AF_INET6, true);
    new DataView(this.to6.buffer).setUint32(24, index, true);
    new DataView(this.mreq6.buffer).setInt32(16, index, true);
  }

  /** Opens both sockets on interface `name`; throws a system error naming the interface. */
  static open(name: string): LanMulticastSocket {
    const index = libc.ifNameToIndex(name);
    if (index === 0)
      throw libc.systemError('if_nametoindex', libc.errno(), `multicast LAN interface ${name}`);
    const fds: number[] = [];
    const fail = (call: string): never => {
      const e = libc.errno();
      for (const fd of fds) libc.close(fd);
      throw libc.systemError(call, e, `multicast LAN interface ${name}`);
    };
    const device = new TextEncoder().encode(`${name}\0`);
    const flags = libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC;
    for (const protocol of [IPPROTO_UDP, IPPROTO_RAW]) {
      const fd = libc.socket(libc.AF_INET, flags, protocol);
      if (fd < 0) fail('socket');
      fds.push(fd);
      if (libc.setsockopt(fd, libc.SOL_SOCKET, SO_BINDTODEVICE, device, device.length) < 0)
        fail('setsockopt');
    }
    const [rx, tx] = fds as [number, number];
    const ifreq = new Uint8Array(12);
    new DataView(ifreq.buffer).setInt32(8, index, true);
    if (libc.setsockopt(tx, libc.IPPROTO_IP, IP_MULTICAST_IF, ifreq, ifreq.length) < 0) fail('setsockopt');
    if (libc.setsockopt(tx, libc.IPPROTO_IP, IP_MULTICAST_LOOP, Int32Array.of(0), 4) < 0) fail('setsockopt');
    const size = Int32Array.of(1 << 20);
    if (libc.setsockopt(rx, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, size, 4) < 0)
      libc.setsockopt(rx, libc.SOL_SOCKET, libc.SO_RCVBUF, size, 4);

    // IPv6: a kernel without it (socket() fails with EAFNOSUPPORT) leaves the bridge IPv4 only.
    const join6 = libc.socket(libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0);
    if (join6 < 0) return new LanMulticastSocket(name, index, rx, tx, -1, -1, -1);
    fds.push(join6);
    const rx6 = libc.socket(
      AF_PACKET,
      libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
      htons(ETH_P_IPV6),
    );
    if (rx6 < 0) fail('socket');
    fds.push(rx6);
    const ll = new Uint8Array(SOCKADDR_LL_SIZE);
    const v = new DataView(ll.buffer);
    v.setUint16(0, AF_PACKET, true);
    v.setUint16(2, ETH_P_IPV6, false);
    v.setInt32(4, index, true);
    if (libc.bind(rx6, ll, ll.length) < 0) fail('bind');
    if (libc.setsockopt(rx6, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, size, 4) < 0)
      libc.setsockopt(rx6, libc.SOL_SOCKET, libc.SO_RCVBUF, size, 4);
    const tx6 = libc.socket(libc.AF_INET6, flags, IPPROTO_RAW);
    if (tx6 < 0) fail('socket');
    fds.push(tx6);
    if (libc.setsockopt(tx6, libc.SOL_SOCKET, SO_BINDTODEVICE, device, device.length) < 0) fail('setsockopt');
    const ifindex = Int32Array.of(index);
    if (libc.setsockopt(tx6, libc.IPPROTO_IPV6, IPV6_MULTICAST_IF, ifindex, 4) < 0) fail('setsockopt');
    if (libc.setsockopt(tx6, libc.IPPROTO_IPV6, IPV6_MULTICAST_LOOP, Int32Array.of(0), 4) < 0)
      fail('setsockopt');
    return new LanMulticastSocket(name, index, rx, tx, join6, rx6, tx6);
  }

  /** Joins (true) or leaves (false) `group` (IPv4 or IPv6) on the interface; false if the kernel refused. */
  membership(group: Uint8Array, join: boolean): boolean {
    if (group.length === 16) {
      this.mreq6.set(group, 0);
      const ok =
        this.join6 >= 0 &&
        libc.setsockopt(
          this.join6,
          libc.IPPROTO_IPV6,
          join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP,
          this.mreq6,
          this.mreq6.length,
        ) === 0;
      if (!ok) this.counters.joinErrors++;
      return ok;
    }
    this.mreq.set(group.subarray(0, 4), 0);
    const ok =
      libc.setsockopt(
        this.rx,
        libc.IPPROTO_IP,
        join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP,
        this.mreq,
        12,
      ) === 0;
    if (!ok) this.counters.joinErrors++;
    return ok;
  }

  /** Delivers each batch of IPv4 (and IPv6) packets to groups that arrive on the interface. */
  start(onPackets: (packets: readonly Uint8Array[]) => void): void {
    if (this.rx6 >= 0) mainPoller.add(this.rx6, () => this.read6(onPackets));
    mainPoller.add(this.rx, () => {
      const batch: Uint8Array[] = [];
      let at = 0;
      for (let i = 0; i < BATCH; i++) {
        const room = this.arena.length - at;
        const buf = room >= SLOT ? this.arena.subarray(at) : this.big;
        this.fromLength[0] = this.from.length;
        const n = libc.recvfrom(this.rx, buf, buf.length, 0, this.from, this.fromLength);
        if (n < 0) {
          const e = libc.errno();
          if (e !== EAGAIN && !transientReadError(e)) mainPoller.remove(this.rx);
          break;
        }
        const total = n >= 20 ? (buf[2]! << 8) | buf[3]! : 0;
        if (n < 20 || buf[0]! >> 4 !== 4 || (buf[16]! & 0xf0) !== 0xe0 || total !== n) {
          this.counters.malformed++;
          continue;
        }
        if (buf === this.big) batch.push(this.big.slice(0, n));
        else {
          batch.push(buf.subarray(0, n));
          at += (n + 7) & ~7;
        }
      }
      this.counters.received += batch.length;
      if (batch.length > 0) onPackets(batch);
      return batch.length === BATCH;
    });
  }

  /** Step 5: IPv6 packets to groups, from the packet socket. */
  private read6(onPackets: (packets: readonly Uint8Array[]) => void): boolean {
    const batch: Uint8Array[] = [];
    let at = 0;
    let reads = 0;
    for (; reads < BATCH; reads++) {
      const room = this.arena.length - at;
      const buf = room >= SLOT ? this.arena.subarray(at) : this.big;
      this.fromLength[0] = this.from6.length;
      const n = libc.recvfrom(this.rx6, buf, buf.length, 0, this.from6, this.fromLength);
      if (n < 0) {
        const e = libc.errno();
        if (e !== EAGAIN && !transientReadError(e)) mainPoller.remove(this.rx6);
        break;
      }
      if (this.from6[10] !== PACKET_MULTICAST) {
        this.counters.ignored++;
        continue;
      }
      const total = n >= 40 ? 40 + ((buf[4]! << 8) | buf[5]!) : 0;
      if (n < 40 || buf[0]! >> 4 !== 6 || buf[24] !== 0xff || total !== n) {
        this.counters.malformed++;
        continue;
      }
      // UDP right after the fixed header, to a group beyond link scope (ff02::/16 and below stay on the LAN).
      if (buf[6] !== 17 || (buf[25]! & 0x0f) <= 2) {
        this.counters.ignored++;
        continue;
      }
      if (buf === this.big) batch.push(this.big.slice(0, n));
      else {
        batch.push(buf.subarray(0, n));
        at += (n + 7) & ~7;
      }
    }
    this.counters.received += batch.length;
    if (batch.length > 0) onPackets(batch);
    return reads === BATCH;
  }

  /** Sends one IPv4 or IPv6 packet (its header included) out of the interface, to its destination group. */
  send(packet: Uint8Array): void {
    if (packet.length >= 40 && packet[0]! >> 4 === 6) {
      if (this.tx6 < 0) {
        this.counters.sendErrors++;
        return;
      }
      this.to6.set(packet.subarray(24, 40), 8);
      const n = libc.sendto(this.tx6, packet, packet.length, 0, this.to6, this.to6.length);
      if (n < 0) this.counters.sendErrors++;
      else this.counters.sent++;
      return;
    }
    this.to.set(packet.subarray(16, 20), 4);
    const n = libc.sendto(this.tx, packet, packet.length, 0, this.to, this.to.length);
    if (n < 0) this.counters.sendErrors++;
    else this.counters.sent++;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    mainPoller.remove(this.rx);
    libc.close(this.rx);
    libc.close(this.tx);
    if (this.rx6 >= 0) mainPoller.remove(this.rx6);
    for (const fd of [this.join6, this.rx6, this.tx6]) if (fd >= 0) libc.close(fd);
  }
}

function htons(v: number): number {
  return ((v & 0xff) << 8) | (v >> 8);
}
