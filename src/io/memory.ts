/**
 * In-memory doubles of the I/O shell's two interfaces, so whole gateways can exchange packets in a test
 * without root, sockets or TUN devices (after wireguard-go's tuntest and bindtest).
 */
import { sameEndpoint, type Endpoint } from '../net/endpoint.js';
import type { Bind, Datagram } from './bind.js';
import type { TunDevice } from './tun.js';

/** A TUN device whose kernel side is the test: `inject` plays the kernel routing a packet in. */
export class MemoryTun implements TunDevice {
  /** Packets the gateway wrote towards the kernel. */
  readonly written: Uint8Array[] = [];
  private onPackets: ((packets: Uint8Array[]) => void) | undefined;
  closed = false;

  constructor(readonly name: string) {}

  start(onPackets: (packets: Uint8Array[]) => void): void {
    this.onPackets = onPackets;
  }

  inject(...packets: Uint8Array[]): void {
    if (!this.onPackets || this.closed) throw new Error(`${this.name} is not started`);
    this.onPackets(packets);
  }

  write(packets: readonly Uint8Array[]): number {
    if (this.closed) return 0;
    for (const p of packets) this.written.push(Uint8Array.from(p));
    return packets.length;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A shared medium: datagrams sent by one MemoryBind are delivered to the bind owning the destination. */
export class MemoryNetwork {
  private readonly binds: MemoryBind[] = [];
  /** Return false to lose a datagram. */
  filter: (from: Endpoint, d: Datagram) => boolean = () => true;

  bind(address: string, port: number): MemoryBind {
    const b = new MemoryBind(this, { address, port });
    this.binds.push(b);
    return b;
  }

  /** Delivery is asynchronous, like a real network. */
  transmit(from: Endpoint, d: Datagram): void {
    if (!this.filter(from, d)) return;
    const target = this.binds.find((b) => !b.closed && sameEndpoint(b.local, d.endpoint));
    if (target) queueMicrotask(() => target.receive({ data: Uint8Array.from(d.data), endpoint: from }));
  }
}

export class MemoryBind implements Bind {
  closed = false;
  private onDatagrams: ((d: readonly Datagram[]) => void) | undefined;

  constructor(
    private readonly network: MemoryNetwork,
    public local: Endpoint,
  ) {}

  get port(): number {
    return this.local.port;
  }

  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void {
    this.onDatagrams = onDatagrams;
  }

  receive(d: Datagram): void {
    if (!this.closed) this.onDatagrams?.([d]);
  }

  send(datagrams: readonly Datagram[]): void {
    if (this.closed) return;
    for (const d of datagrams) this.network.transmit(this.local, d);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
