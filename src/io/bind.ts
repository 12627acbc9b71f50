/**
 * The network side of the I/O shell: UDP datagrams to and from peers, in batches (after wireguard-go's
 * conn.Bind). Implementations: LinuxUdpBind (udp-linux.ts, recvmmsg/sendmmsg through koffi), UdpBind
 * (udp.ts, node:dgram, the fallback) and MemoryBind (memory.ts, for tests).
 */
import type { Endpoint } from '../net/endpoint.js';

export interface Datagram {
  readonly data: Uint8Array;
  /**
   * Source on receive, destination on send. A received endpoint's `local` is the address the datagram was
   * sent to, where the bind can tell; a datagram sent to an endpoint with a `local` leaves from that address
   * (LinuxUdpBind, MemoryBind), so that keeping the endpoint a peer last wrote from keeps answers coming from
   * the address it wrote to. UdpBind (node:dgram) can do neither: the kernel picks the source.
   */
  readonly endpoint: Endpoint;
}

export interface Bind {
  /** The local UDP port actually bound. */
  readonly port: number;
  /**
   * Starts receiving; `onDatagrams` gets every datagram that arrives, in batches. The datagrams are the
   * callback's until it returns: it may overwrite them (Device.receive decrypts in place), and must copy what it
   * keeps longer, since the bind may reuse their memory for the next batch.
   */
  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void;
  send(datagrams: readonly Datagram[]): void;
  close(): Promise<void>;
}
