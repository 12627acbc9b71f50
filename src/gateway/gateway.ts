/**
 * The gateway: one TUN device, the routing table, and the tunnels behind it.
 *
 * 1. Packets the kernel routes into the TUN device → Router → the owning tunnel (or dropped, counted).
 * 2. Packets a tunnel decrypts → written to the TUN device for the kernel to deliver or forward.
 * 3. With multicast on (attachMulticast): packets the host sends to a group → the replicator, with the host
 *    as their source port; copies for the host (it joined through IGMP/MLD on the TUN device, or statically)
 *    → written to the TUN device, one batch per batch of the caller.
 */
import type { Prefix } from '../net/ip.js';
import { monotonicEpochMs, type Clock } from '../io/clock.js';
import { Router, type Tunnel } from './router.js';
import type { TunDevice } from '../io/tun.js';
import type { IpHeader } from '../net/ip-packet.js';
import type { MulticastPort, Replicator } from './multicast.js';

/** The unspecified address: the source of the IGMP queries the host gets (see attachMulticast). */
const HOST_QUERY_SOURCE_4 = new Uint8Array(4);

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

  /**
   * Makes the host a multicast port of `replicator` (id "host"): its group traffic from the TUN device is
   * replicated, it receives what it joined, and it is queried in `families` like any port, so its
   * memberships are renewed by its kernel's reports. Returns the port.
   *
   * IGMP queries to the host come from 0.0.0.0, not from the gateway's address: that address is the TUN
   * device's own, and Linux drops a packet arriving with a local source as a martian (fib_validate_source),
   * while it takes a zero source to a link-local group or in IGMP (ip_route_input_mc) and answers the query.
   * MLD queries keep the replicator's link-local source (fe80::1), which the TUN device does not hold; Linux
   * accepts only a link-local source for MLD queries (RFC 3810 §5.1.14), so :: would not do.
   */
  attachMulticast(replicator: Replicator, families: readonly (4 | 6)[], now: number): MulticastPort {
    const queued: Uint8Array[] = [];
    const port: MulticastPort = {
      id: 'host',
      families,
      querySource4: HOST_QUERY_SOURCE_4,
      send: (packet: Uint8Array, header: IpHeader): void =>
        void queued.push(packet.subarray(0, header.length)),
      flush: (): void => {
        if (queued.length === 0) return;
        const batch = queued.splice(0, queued.length);
        this.deliver(batch);
      },
    };
    this.router.groups = {
      route: (packet, header, at) => void replicator.receive(packet, header, port, at),
      flush: () => replicator.flush(),
    };
    replicator.addPort(port, now);
    return port;
  }

  setRoutes(tunnel: Tunnel, prefixes: readonly Prefix[]): void {
    this.router.setRoutes(tunnel, prefixes);
  }

  async close(): Promise<void> {
    await this.tun.close();
  }
}
