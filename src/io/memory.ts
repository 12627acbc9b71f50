/**
 * In-memory doubles of the I/O shell's two interfaces, so whole gateways can exchange packets in a test
 * without root, sockets or TUN devices (after wireguard-go's tuntest and bindtest).
 */
import type { Endpoint } from '../net/endpoint.js';
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

/**
 * A shared medium: datagrams sent by one MemoryBind are delivered to the bind that owns the destination address
 * and port. Like LinuxUdpBind, a bind may hold several addresses and reports on each received datagram the one
 * it was sent to (Endpoint.local); it sends from the datagram's `local` when that is still one of its addresses,
 * else (none, or gone: the kernel refuses it, and LinuxUdpBind sends again without it) from its first address,
 * the one the "kernel" picks.
 */
export class MemoryNetwork {
  private readonly binds: MemoryBind[] = [];
  /** Return false to lose a datagram. `from` is the source the datagram left from. */
  filter: (from: Endpoint, d: Datagram) => boolean = () => true;

  /** A bind on `address` (or on each of several addresses, the first being the default source) and `port`. */
  bind(address: string | readonly string[], port: number): MemoryBind {
    const b = new MemoryBind(this, typeof address === 'string' ? [address] : address, port);
    this.binds.push(b);
    return b;
  }

  /** Delivery is asynchronous, like a real network. */
  transmit(from: Endpoint, d: Datagram): void {
    if (!this.filter(from, d)) return;
    const to = d.endpoint;
    const target = this.binds.find(
      (b) => !b.closed && b.port === to.port && b.addresses.includes(to.address),
    );
    if (target) {
      const endpoint: Endpoint = { address: from.address, port: from.port, local: to.address };
      queueMicrotask(() => target.receive({ data: Uint8Array.from(d.data), endpoint }));
    }
  }
}

export class MemoryBind implements Bind {
  closed = false;
  /** Datagrams whose local address was not (or no longer) one of this bind's, sent from the first instead. */
  sourcesForgotten = 0;
  /** The bind's addresses; a test may remove one (the address has gone from the host) or add one. */
  readonly addresses: string[];
  private onDatagrams: ((d: readonly Datagram[]) => void) | undefined;

  constructor(
    private readonly network: MemoryNetwork,
    addresses: readonly string[],
    readonly port: number,
  ) {
    if (addresses.length === 0) throw new Error('a MemoryBind needs an address');
    this.addresses = [...addresses];
  }

  /** The first address and the port: where peers reach this bind by default. */
  get local(): Endpoint {
    return { address: this.addresses[0]!, port: this.port };
  }

  start(onDatagrams: (datagrams: readonly Datagram[]) => void): void {
    this.onDatagrams = onDatagrams;
  }

  receive(d: Datagram): void {
    if (!this.closed) this.onDatagrams?.([d]);
  }

  send(datagrams: readonly Datagram[]): void {
    if (this.closed) return;
    for (const d of datagrams) {
      let source = d.endpoint.local;
      if (source !== undefined && !this.addresses.includes(source)) {
        this.sourcesForgotten++;
        source = undefined;
      }
      this.network.transmit({ address: source ?? this.addresses[0]!, port: this.port }, d);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
