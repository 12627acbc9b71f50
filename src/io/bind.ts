/**
 * The network side of the I/O shell: UDP datagrams to and from peers, in batches (after wireguard-go's
 * conn.Bind). Implementations: LinuxUdpBind (udp-linux.ts, recvmmsg/sendmmsg through koffi), UdpBind
 * (udp.ts, node:dgram, the fallback) and MemoryBind (memory.ts, for tests).
 */
import type { Endpoint } from '../net/endpoint.js';

export interface Datagram {
  readonly data: Uint8Array;
  /** Source on receive, destination on send. */
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
