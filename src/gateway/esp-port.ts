/**
 * Where ESP enters and leaves the gateway: the UDP 4500 socket (RFC 3948) and, for peers with no NAT between
 * us, the raw ESP socket (protocol 50), both read in the same poll loop as WireGuard's socket and the TUN
 * device. Every site's inbound SAs are registered here by SPI (RFC 4303 §3.4.2: the SPI alone picks the SA).
 *
 * 1. UDP 4500 datagram → classifyNatT: IKE (non-ESP marker) → the IKE side's handler; NAT keepalive →
 *    counted, ignored; anything else too short → counted, dropped; ESP → 3.
 * 2. Raw ESP packet (IP header already removed by the bind) → 3.
 * 3. EspInboundSet.open into a slab buffer (unknown SPI, replay, bad ICV, ... are typed drops counted on the
 *    set or the SA) → the owning IpsecSite takes the opened packet (it may note the peer's new UDP endpoint,
 *    RFC 3948 NAT mapping change) → after the batch, each site touched hands its packets to the gateway.
 */
import type { Bind, Datagram } from '../io/bind.js';
import type { Endpoint } from '../net/endpoint.js';
import { Slab } from '../net/slab.js';
import { EspInboundSet, type EspInboundSa } from '../ipsec/esp.js';
import { classifyNatT, ikeMessage } from '../ipsec/esp-udp.js';

export type EspCarrier = 'udp' | 'raw';

/** What the port needs of a site (IpsecSite). */
export interface EspReceiver {
  /** An opened payload (valid until flushInbound returns) from `from` over `carrier`. */
  receive(sa: EspInboundSa, payload: Uint8Array, from: Endpoint, carrier: EspCarrier): void;
  /** End of a batch: hand what receive() collected to the gateway. */
  flushInbound(): void;
}

export interface EspPortOptions {
  udp?: Bind;
  raw?: Bind;
  /** IKE messages that arrived on port 4500 (marker removed). */
  onIke?: (message: Uint8Array, from: Endpoint) => void;
}

export class EspPort {
  readonly counters = { datagramsIn: 0, rawIn: 0, ike: 0, keepalives: 0, invalid: 0, opened: 0, dropped: 0 };
  readonly inbound = new EspInboundSet();
  private readonly owners = new Map<EspInboundSa, EspReceiver>();
  private readonly touched: EspReceiver[] = [];
  private readonly slab = new Slab(256 * 1024);
  readonly udp: Bind | undefined;
  readonly raw: Bind | undefined;
  private readonly onIke: ((message: Uint8Array, from: Endpoint) => void) | undefined;

  constructor(options: EspPortOptions) {
    this.udp = options.udp;
    this.raw = options.raw;
    this.onIke = options.onIke;
  }

  start(): void {
    this.udp?.start((datagrams) => {
      this.counters.datagramsIn += datagrams.length;
      for (const d of datagrams) {
        switch (classifyNatT(d.data)) {
          case 'esp':
            this.openOne(d.data, d.endpoint, 'udp');
            break;
          case 'ike':
            this.counters.ike++;
            this.onIke?.(ikeMessage(d.data).slice(), d.endpoint);
            break;
          case 'keepalive':
            this.counters.keepalives++;
            break;
          case 'invalid':
            this.counters.invalid++;
            break;
        }
      }
      this.flush();
    });
    this.raw?.start((datagrams) => {
      this.counters.rawIn += datagrams.length;
      for (const d of datagrams) this.openOne(d.data, d.endpoint, 'raw');
      this.flush();
    });
  }

  register(sa: EspInboundSa, owner: EspReceiver): void {
    this.inbound.add(sa);
    this.owners.set(sa, owner);
  }

  unregister(spi: number): void {
    const sa = this.inbound.get(spi);
    if (sa) this.owners.delete(sa);
    this.inbound.remove(spi);
  }

  send(carrier: EspCarrier, datagrams: readonly Datagram[]): boolean {
    const bind = carrier === 'udp' ? this.udp : this.raw;
    if (!bind) return false;
    bind.send(datagrams);
    return true;
  }

  private openOne(packet: Uint8Array, from: Endpoint, carrier: EspCarrier): void {
    // Room for a rebuilt IPv6 header in front of a transport-mode payload (IpsecSite.receive).
    const out = this.slab.take(packet.length + 40);
    const status = this.inbound.open(packet, out.subarray(40));
    const sa = this.inbound.last;
    if (status !== 'ok' || !sa) {
      this.counters.dropped++;
      return;
    }
    const owner = this.owners.get(sa);
    if (!owner) return;
    this.counters.opened++;
    owner.receive(sa, out.subarray(0, 40 + sa.opened.length), from, carrier);
    if (!this.touched.includes(owner)) this.touched.push(owner);
  }

  private flush(): void {
    const touched = this.touched;
    try {
      for (const t of touched) t.flushInbound();
    } finally {
      touched.length = 0;
    }
  }

  async close(): Promise<void> {
    await this.udp?.close();
    await this.raw?.close();
  }
}
