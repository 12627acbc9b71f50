/**
 * The gateway: one TUN device, the routing table, and the tunnels behind it.
 *
 * 1. Packets the kernel routes into the TUN device → Router → the owning tunnel (or dropped, counted).
 * 2. Packets a tunnel decrypts → written to the TUN device for the kernel to deliver or forward.
 */
import type { Prefix } from '../net/ip.js';
import { monotonicEpochMs, type Clock } from '../io/clock.js';
import { Router, type Tunnel } from './router.js';
import type { TunDevice } from '../io/tun.js';

export class Gateway {
  readonly router = new Router();
  readonly counters = { tunPacketsIn: 0, tunPacketsOut: 0, tunWriteRefused: 0 };

  constructor(
    readonly tun: TunDevice,
    private readonly clock: Clock = monotonicEpochMs,
  ) {}

  start(): void {
    this.tun.start((packets) => {
      const now = this.clock();
      this.counters.tunPacketsIn += packets.length;
      const router = this.router;
      for (const p of packets) router.route(p, now);
      router.flush();
    });
  }

  /** Where tunnels hand decrypted packets. */
  readonly deliver = (packets: Uint8Array[]): void => {
    const written = this.tun.write(packets);
    this.counters.tunPacketsOut += written;
    this.counters.tunWriteRefused += packets.length - written;
  };

  setRoutes(tunnel: Tunnel, prefixes: readonly Prefix[]): void {
    this.router.setRoutes(tunnel, prefixes);
  }

  async close(): Promise<void> {
    await this.tun.close();
  }
}
