/**
 * LanMulticastSocket: the Linux side of the IGMP proxy (RFC 4605) on one LAN interface, IPv4.
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
const EAGAIN = 11;
const BATCH = 64;
const SLOT = 2048;
const MAX_PACKET = 65_535;

export class LanMulticastSocket {
  readonly counters = { received: 0, sent: 0, sendErrors: 0, malformed: 0, joinErrors: 0 };
  private readonly arena = new Uint8Array(BATCH * SLOT);
  private readonly big = new Uint8Array(MAX_PACKET);
  private readonly from = new Uint8Array(libc.SOCKADDR_IN_SIZE);
  private readonly fromLength = new Uint32Array(1);
  private readonly to = new Uint8Array(libc.SOCKADDR_IN_SIZE);
  private readonly mreq = new Uint8Array(12);
  private closed = false;

  private constructor(
    readonly name: string,
    readonly index: number,
    private readonly rx: number,
    private readonly tx: number,
  ) {
    new DataView(this.to.buffer).setUint16(0, libc.AF_INET, true);
    new DataView(this.mreq.buffer).setInt32(8, index, true);
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
    return new LanMulticastSocket(name, index, rx, tx);
  }

  /** Joins (true) or leaves (false) IPv4 group `group` on the interface; false if the kernel refused. */
  membership(group: Uint8Array, join: boolean): boolean {
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

  /** Delivers each batch of IPv4 packets to groups that arrive on the interface. */
  start(onPackets: (packets: readonly Uint8Array[]) => void): void {
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

  /** Sends one IPv4 packet (its header included) out of the interface, to its destination group. */
  send(packet: Uint8Array): void {
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
  }
}
