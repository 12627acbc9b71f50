/**
 * RawEspBind: ESP straight over IP (protocol 50), for peers with no NAT between us (RFC 4303; RFC 3948 is
 * only for the NAT case), as a Bind so the ESP shell treats it like the UDP 4500 socket. IPv4 only for now.
 *
 * This kernel (6.18, no ESP module: no xfrm "esp" type) has no protocol handler for 50, and answers an ESP
 * packet addressed to it with ICMP protocol-unreachable unless a raw socket for protocol 50 takes it
 * (ip_protocol_deliver_rcu, net/ipv4/ip_input.c). Seen in the interop test (test/interop/ipsec-esp.test.ts):
 * with the raw socket open and its default receive buffer, bursts of packets that overflowed the buffer were
 * each answered with protocol-unreachable (rate-limited); with the 4 MiB buffer set below, a 20 MB transfer
 * passes with no ICMP at all. So the buffer matters for correctness here, not only for speed.
 *
 * 1. socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ESP); needs CAP_NET_RAW. Buffers of
 *    4 MiB (SO_RCVBUFFORCE / SO_SNDBUFFORCE, else up to the sysctl caps).
 * 2. Receive on the main thread's poller: recvfrom(2) until EAGAIN (at most a batch), each packet with its
 *    IPv4 header, which is skipped (IHL); the source address comes from the header. Views into one receive
 *    arena, valid until the callback returns (as LinuxUdpBind's).
 * 3. Send: sendto(2) per packet to a sockaddr_in with port 0; the kernel writes the IP header (no IP_HDRINCL).
 */
import type { Endpoint } from '../net/endpoint.js';
import { formatAddress, parseAddress } from '../net/ip.js';
import type { Bind, Datagram } from './bind.js';
import * as libc from './libc.js';
import { mainPoller, transientReadError } from './poller.js';

const IPPROTO_ESP = 50;
const BATCH = 64;
const MAX_PACKET = 65_535;
const EAGAIN = 11;
const SOCKET_BUFFER_BYTES = 4 << 20;

export class RawEspBind implements Bind {
  readonly port = 0;
  readonly counters = { received: 0, sent: 0, sendErrors: 0, malformed: 0 };
  private readonly arena = new Uint8Array(BATCH * 2048);
  private readonly big = new Uint8Array(MAX_PACKET);
  private readonly from = new Uint8Array(libc.SOCKADDR_IN_SIZE);
  private readonly fromLength = new Uint32Array(1);
  private readonly to = new Uint8Array(libc.SOCKADDR_IN_SIZE);
  private readonly sources = new Map<number, Endpoint>();
  private closed = false;

  private constructor(private readonly fd: number) {
    new DataView(this.to.buffer).setUint16(0, libc.AF_INET, true);
  }

  /** Opens the raw socket; throws a system error (EPERM without CAP_NET_RAW). */
  static open(): RawEspBind {
    const fd = libc.socket(libc.AF_INET, libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, IPPROTO_ESP);
    if (fd < 0) throw libc.systemError('socket', libc.errno(), 'raw ESP socket');
    // Large buffers, as for the UDP socket (udp-linux.ts): past the sysctl caps where we may, else up to them.
    const size = Int32Array.of(SOCKET_BUFFER_BYTES);
    for (const [force, plain] of [
      [libc.SO_RCVBUFFORCE, libc.SO_RCVBUF],
      [libc.SO_SNDBUFFORCE, libc.SO_SNDBUF],
    ] as const) {
      if (libc.setsockopt(fd, libc.SOL_SOCKET, force, size, 4) < 0)
        libc.setsockopt(fd, libc.SOL_SOCKET, plain, size, 4);
    }
    return new RawEspBind(fd);
  }

  private source(packet: Uint8Array): Endpoint {
    const key = ((packet[12]! << 24) | (packet[13]! << 16) | (packet[14]! << 8) | packet[15]!) >>> 0;
    let e = this.sources.get(key);
    if (!e) {
      if (this.sources.size > 1024) this.sources.clear();
      e = Object.freeze({ address: formatAddress({ family: 4, bytes: packet.slice(12, 16) }), port: 0 });
      this.sources.set(key, e);
    }
    return e;
  }

  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void {
    mainPoller.add(this.fd, () => {
      const batch: Datagram[] = [];
      let at = 0;
      for (let i = 0; i < BATCH; i++) {
        const room = this.arena.length - at;
        const buf = room >= 2048 ? this.arena.subarray(at) : this.big;
        this.fromLength[0] = this.from.length;
        const n = libc.recvfrom(this.fd, buf, buf.length, 0, this.from, this.fromLength);
        if (n < 0) {
          const e = libc.errno();
          if (e !== EAGAIN && !transientReadError(e)) mainPoller.remove(this.fd);
          break;
        }
        const ihl = ((buf[0] ?? 0) & 0x0f) * 4;
        if (n < 20 || buf[0]! >> 4 !== 4 || ihl < 20 || ihl > n) {
          this.counters.malformed++;
          continue;
        }
        const packet = buf === this.big ? this.big.slice(ihl, n) : buf.subarray(ihl, n);
        if (buf !== this.big) at += (n + 7) & ~7;
        batch.push({ data: packet, endpoint: this.source(buf) });
      }
      this.counters.received += batch.length;
      if (batch.length > 0) onDatagrams(batch);
      return batch.length === BATCH;
    });
  }

  send(datagrams: readonly Datagram[]): void {
    for (const d of datagrams) {
      const addr = parseAddress(d.endpoint.address);
      if (!addr.ok || addr.value.family !== 4) {
        this.counters.sendErrors++;
        continue;
      }
      this.to.set(addr.value.bytes, 4);
      const n = libc.sendto(this.fd, d.data, d.data.length, 0, this.to, this.to.length);
      if (n < 0) this.counters.sendErrors++;
      else this.counters.sent++;
    }
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      mainPoller.remove(this.fd);
      libc.close(this.fd);
    }
    return Promise.resolve();
  }
}
