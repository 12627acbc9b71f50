/**
 * The shell of one IPsec site (a peer gateway and the subnets behind it): a Tunnel for the router, the CHILD
 * SAs the IKE side installs, replaces and removes, and per-SA counters.
 *
 * Outbound (Router → send → flush):
 * 1. The router hands a packet whose destination is one of the site's routes (its remote subnets).
 * 2. Tunnel mode: the whole packet is the payload, next header 4 or 41. Transport mode: the payload is what
 *    follows the IP header, next header its protocol; the kernel writes the new outer header when the ESP
 *    packet leaves through the socket.
 * 3. An SA past its hard byte lifetime (RFC 4301 §4.4.2.1) seals nothing more: the packet is a counted drop.
 *    The current outbound SA seals it into a slab buffer (with one CHILD SA per subnet pair, the current SA of
 *    the pair whose selectors hold the packet's source and destination; a packet no SA's selectors hold is
 *    a counted drop, `unmatched`, never sealed with another pair's SA); it leaves with the batch over UDP 4500 (to the
 *    peer's endpoint, which follows NAT mapping changes) or the raw ESP socket. An exhausted SA drops and
 *    counts; before that, `rekeyNeeded` (listed by rekeyDue) has the IpsecInterface's timer ask the IKE side to
 *    replace it.
 * Inbound (EspPort → receive → flushInbound):
 * 4. Tunnel mode: the inner packet as opened. Transport mode: an IPv4/IPv6 header is rebuilt in front of the
 *    payload from the peer's and our outer addresses.
 *    What opens on an SA past its hard byte lifetime is a counted drop.
 * 5. A packet to a multicast group goes to the replicator when one is attached (its copies leave at the end of
 *    the batch); any other packet, the gateway's `admit` (the policy hook, as for members) sees with the site;
 *    what passes is written to the TUN device in one batch.
 */
import type { ChildSaSpec } from '../ipsec/child-sa.js';
import { EspInboundSa, EspOutboundSa, type EspDropReason } from '../ipsec/esp.js';
import { compileSelectors, selectorsAdmit, type CompiledSelector } from '../ipsec/esp-selectors.js';
import { randomBytes } from 'node:crypto';

import { REKEY_JITTER } from '../ipsec/constants.js';
import { NEXT_HEADER_IPV4, NEXT_HEADER_IPV6 } from '../ipsec/esp-constants.js';
import type { Datagram } from '../io/bind.js';
import type { Endpoint } from '../net/endpoint.js';
import { parseAddress } from '../net/ip.js';
import { readIpHeader, type IpHeader } from '../net/ip-packet.js';
import { Slab } from '../net/slab.js';
import type { EspCarrier, EspPort, EspReceiver } from './esp-port.js';
import type { Tunnel } from './router.js';

/** Where opened packets to multicast groups go (the replicator, with the site as their source port). */
export interface SiteGroupTap {
  fromSite(site: IpsecSite, packet: Uint8Array, header: IpHeader): void;
  /** The end of an inbound batch: the copies leave. */
  flush(): void;
}

export interface IpsecSiteOptions {
  name: string;
  port: EspPort;
  deliver: (packets: Uint8Array[]) => void;
  /** Decides whether an opened packet from this site may go on to the TUN side (policies). */
  admit?: (packet: Uint8Array, header: IpHeader, site: IpsecSite) => boolean;
  /** The multicast tap in use, if any (asked per group packet: replication may start after the site). */
  groups?: () => SiteGroupTap | undefined;
  /** Told when a packet is routed here and no CHILD SA can carry it (the IKE side may initiate on traffic). */
  onNoSa?: (site: IpsecSite) => void;
  /** Randomness for the byte lifetime's jitter (default node:crypto). */
  random?: (n: number) => Buffer;
}

/**
 * Why a packet routed to the site was not sealed: no CHILD SA at all, none whose selectors hold it, its SA
 * past its hard byte lifetime or out of sequence numbers, or too large to seal.
 */
export type SiteSendDrop = 'noSa' | 'unmatched' | 'expired' | 'exhausted' | 'oversize';

export interface ChildSaPath {
  /** The peer: its address, and its UDP port for 'udp' (4500, or what its NAT maps it to). */
  peer: Endpoint;
  carrier: EspCarrier;
  /** Our own outer address, for the header rebuilt in front of transport-mode payloads. */
  localAddress?: string;
  /**
   * The responder of a rekey: keep sending on the SA in use until the peer shows it has the new one (a packet
   * opens on the new inbound SA) or the old SA is removed (the peer's delete). The peer installs the new SA
   * only when our response reaches its IKE daemon; ESP sent on it before then would be dropped there.
   */
  outboundLater?: boolean;
  /**
   * Byte lifetimes (RFC 4301 §4.4.2.1, strongSwan's rekey_bytes / life_bytes), each direction counted on its
   * own: at `rekeyBytes` less a random part of up to REKEY_JITTER of it (drawn per SA, as for time lifetimes,
   * so that the two ends rarely start the same rekey at once) the SA is listed by rekeyDue, past `lifeBytes`
   * it carries nothing more and is listed by expiredDue. 0 or absent: no limit.
   */
  rekeyBytes?: number;
  lifeBytes?: number;
}

export interface ChildSaStatus {
  inboundSpi: number;
  outboundSpi: number;
  mode: string;
  transform: string;
  carrier: EspCarrier;
  peer: Endpoint;
  inbound: { packets: number; bytes: number; drops: Partial<Record<EspDropReason, number>> };
  outbound: { packets: number; bytes: number; exhausted: number; rekeyNeeded: boolean } | null;
}

interface ChildSa {
  spec: ChildSaSpec;
  /** Installed with `outboundLater` and not yet the current outbound SA. */
  outboundPending: boolean;
  inbound: EspInboundSa;
  outbound: EspOutboundSa;
  path: ChildSaPath;
  /** Parsed outer addresses for transport mode. */
  peerBytes: Uint8Array | null;
  localBytes: Uint8Array | null;
  /** Its selectors: SAs with the same key replace one another in a rekey; others carry other subnet pairs. */
  key: string;
  local: CompiledSelector[];
  remote: CompiledSelector[];
  /** Byte lifetimes; Infinity for none, so the per-packet check is one comparison. */
  rekeyBytes: number;
  lifeBytes: number;
  /** A packet was refused for the hard byte lifetime. */
  expired: boolean;
}

export class IpsecSite implements Tunnel, EspReceiver {
  readonly name: string;
  readonly counters = {
    packetsIn: 0,
    packetsOut: 0,
    refused: 0,
    noSa: 0,
    exhausted: 0,
    oversize: 0,
    /** Packets to multicast groups handed to the replicator. */
    groupsIn: 0,
    /** Packets not sealed, or not delivered, because their SA was past its hard byte lifetime. */
    expired: 0,
    /**
     * Packets that no CHILD SA's traffic selectors hold (a site with one CHILD SA per subnet pair, the pair's
     * SA missing): dropped, never sealed with another pair's SA.
     */
    unmatched: 0,
  };
  /**
   * Choose each packet's SA by its source and destination against the SAs' selectors even when only one SA is
   * up (a per-pair site that lost the others' SAs). Set for per-pair sites; it turns on by itself once two
   * selector sets were up at once (the peer keeps one SA per pair).
   */
  selectBySelectors = false;
  private readonly port: EspPort;
  private readonly deliverPackets: (packets: Uint8Array[]) => void;
  private readonly admit: IpsecSiteOptions['admit'];
  private readonly onNoSa: IpsecSiteOptions['onNoSa'];
  private readonly groupTap: IpsecSiteOptions['groups'];
  private readonly random: (n: number) => Buffer;
  /** The tap that took packets in this inbound batch (flushed with it). */
  private tapped: SiteGroupTap | undefined;
  private readonly sas = new Map<number, ChildSa>();
  /**
   * The SAs new packets are sealed with: per selector set, the most recently installed. One entry unless the
   * peer keeps one CHILD SA per subnet pair.
   */
  private current: ChildSa[] = [];
  private readonly outbound: Datagram[] = [];
  private readonly inbound: Uint8Array[] = [];
  private readonly slab = new Slab(256 * 1024);

  constructor(options: IpsecSiteOptions) {
    this.name = options.name;
    this.port = options.port;
    this.deliverPackets = options.deliver;
    this.admit = options.admit;
    this.onNoSa = options.onNoSa;
    this.groupTap = options.groups;
    this.random = options.random ?? randomBytes;
  }

  /**
   * Installs a CHILD SA (or replaces the one with the same inbound SPI). New packets go out on it at once (or,
   * with `path.outboundLater`, once the peer uses it or the SA in use is removed); the SAs it replaces in a
   * rekey keep receiving until removeChildSa (RFC 7296 §2.8: the old inbound SA lives until the delete), so
   * nothing in flight is lost.
   */
  installChildSa(spec: ChildSaSpec, path: ChildSaPath): void {
    const previous = this.sas.get(spec.inboundSpi >>> 0);
    if (previous) this.removeChildSa(spec.inboundSpi);
    const transport = spec.mode === 'transport';
    const bytes = (a: string | undefined): Uint8Array | null => {
      const p = a === undefined ? undefined : parseAddress(a);
      return p?.ok ? p.value.bytes : null;
    };
    const key = JSON.stringify([spec.localSelectors, spec.remoteSelectors]);
    const index = this.current.findIndex((c) => c.key === key);
    const later = path.outboundLater === true && index >= 0;
    const sa: ChildSa = {
      spec,
      outboundPending: later,
      inbound: new EspInboundSa(spec),
      outbound: new EspOutboundSa(spec),
      path,
      peerBytes: transport ? bytes(path.peer.address) : null,
      localBytes: transport ? bytes(path.localAddress) : null,
      key,
      local: compileSelectors(spec.localSelectors),
      remote: compileSelectors(spec.remoteSelectors),
      rekeyBytes:
        path.rekeyBytes !== undefined && path.rekeyBytes > 0 ? this.jittered(path.rekeyBytes) : Infinity,
      lifeBytes: path.lifeBytes !== undefined && path.lifeBytes > 0 ? path.lifeBytes : Infinity,
      expired: false,
    };
    if (transport && (!sa.peerBytes || !sa.localBytes || sa.peerBytes.length !== sa.localBytes.length))
      throw new RangeError('transport mode needs the peer and local addresses of one family');
    this.sas.set(sa.inbound.spi, sa);
    this.port.register(sa.inbound, this);
    if (!later) this.makeCurrent(sa);
  }

  /** A rekey byte count lowered by a random part of up to REKEY_JITTER of it (at least 1 byte remains). */
  private jittered(bytes: number): number {
    const r = this.random(4).readUInt32BE(0) / 0x1_0000_0000;
    return Math.max(1, bytes - Math.floor(bytes * REKEY_JITTER * r));
  }

  private makeCurrent(sa: ChildSa): void {
    sa.outboundPending = false;
    const index = this.current.findIndex((c) => c.key === sa.key);
    if (index >= 0) this.current[index] = sa;
    else this.current.push(sa);
    if (this.current.length > 1) this.selectBySelectors = true;
  }

  /** Removes a CHILD SA by our (inbound) SPI; the newest remaining one carries outbound traffic. */
  removeChildSa(inboundSpi: number): boolean {
    const sa = this.sas.get(inboundSpi >>> 0);
    if (!sa) return false;
    this.sas.delete(sa.inbound.spi);
    this.port.unregister(sa.inbound.spi);
    sa.outbound.dispose();
    const index = this.current.indexOf(sa);
    if (index >= 0) {
      const next = [...this.sas.values()].filter((c) => c.key === sa.key).pop();
      if (next) this.makeCurrent(next);
      else this.current.splice(index, 1);
    }
    return true;
  }

  /**
   * The CHILD SAs whose outbound sequence numbers near their end (`EspOutboundSa.rekeyNeeded`, RFC 4303
   * §3.3.3): the IKE side must replace them before they run out. Visited by the shell's timer, not per packet.
   */
  rekeyDue(): {
    inboundSpi: number;
    outboundSpi: number;
    nextSequence: number;
    /** What is running out: sequence numbers, or bytes (the soft byte lifetime). */
    why: 'sequence' | 'bytes';
    /** The SA's rekey byte count (after its jitter); Infinity when it has none. */
    rekeyBytes: number;
  }[] {
    const due: ReturnType<IpsecSite['rekeyDue']> = [];
    for (const sa of this.sas.values()) {
      const bytes = Math.max(sa.inbound.counters.bytes, sa.outbound.counters.bytes) >= sa.rekeyBytes;
      if (sa.outbound.rekeyNeeded || bytes)
        due.push({
          inboundSpi: sa.inbound.spi,
          outboundSpi: sa.outbound.spi,
          nextSequence: sa.outbound.nextSequence,
          why: sa.outbound.rekeyNeeded ? 'sequence' : 'bytes',
          rekeyBytes: sa.rekeyBytes,
        });
    }
    return due;
  }

  /** The CHILD SAs past their hard byte lifetime in either direction: the IKE side must delete them. */
  expiredDue(): { inboundSpi: number; outboundSpi: number; bytesIn: number; bytesOut: number }[] {
    const due: ReturnType<IpsecSite['expiredDue']> = [];
    for (const sa of this.sas.values()) {
      const bytesIn = sa.inbound.counters.bytes;
      const bytesOut = sa.outbound.counters.bytes;
      if (sa.expired || bytesIn >= sa.lifeBytes || bytesOut >= sa.lifeBytes)
        due.push({ inboundSpi: sa.inbound.spi, outboundSpi: sa.outbound.spi, bytesIn, bytesOut });
    }
    return due;
  }

  /** Tests only: moves the current outbound SA's next sequence number forward (EspOutboundSa.skipSequenceForTest). */
  skipSequenceForTest(next: number): void {
    this.current[this.current.length - 1]?.outbound.skipSequenceForTest(next);
  }

  childSas(): ChildSaStatus[] {
    return [...this.sas.values()].map((sa) => ({
      inboundSpi: sa.inbound.spi,
      outboundSpi: sa.outbound.spi,
      mode: sa.spec.mode,
      transform: sa.inbound.transformName,
      carrier: sa.path.carrier,
      peer: sa.path.peer,
      inbound: {
        packets: sa.inbound.counters.packets,
        bytes: sa.inbound.counters.bytes,
        drops: Object.fromEntries(Object.entries(sa.inbound.counters.drops).filter(([, n]) => n > 0)),
      },
      outbound:
        this.current.includes(sa) || sa.outboundPending || sa.outbound.counters.packets > 0
          ? {
              packets: sa.outbound.counters.packets,
              bytes: sa.outbound.counters.bytes,
              exhausted: sa.outbound.counters.exhausted,
              rekeyNeeded: sa.outbound.rekeyNeeded,
            }
          : null,
    }));
  }

  /** Tunnel: seals one packet routed to this site; it leaves at flush(). */
  send(packet: Uint8Array, _now: number, header: IpHeader): void {
    const sa = this.current.length === 1 && !this.selectBySelectors ? this.current[0] : this.pick(packet);
    if (!sa) {
      this.drop(this.current.length === 0 ? 'noSa' : 'unmatched');
      this.onNoSa?.(this);
      return;
    }
    let payload = packet.subarray(0, header.length);
    let nextHeader = header.family === 4 ? NEXT_HEADER_IPV4 : NEXT_HEADER_IPV6;
    if (sa.spec.mode === 'transport') {
      const headerLength = header.family === 4 ? (packet[0]! & 0x0f) * 4 : 40;
      nextHeader = header.family === 4 ? packet[9]! : packet[6]!;
      payload = packet.subarray(headerLength, header.length);
    }
    if (sa.outbound.counters.bytes + payload.length > sa.lifeBytes) {
      sa.expired = true;
      this.drop('expired');
      return;
    }
    const out = this.slab.take(sa.outbound.sealedLength(payload.length));
    const n = sa.outbound.seal(payload, nextHeader, out);
    if (n < 0) {
      this.drop(sa.outbound.exhausted ? 'exhausted' : 'oversize');
      return;
    }
    this.counters.packetsOut++;
    this.outbound.push({ data: out.subarray(0, n), endpoint: sa.path.peer });
  }

  private drop(reason: SiteSendDrop): void {
    this.counters[reason]++;
  }

  /** With several selector sets (one CHILD SA per subnet pair): the SA whose selectors hold the packet. */
  private pick(packet: Uint8Array): ChildSa | undefined {
    for (const sa of this.current) if (selectorsAdmit(packet, sa.local, sa.remote)) return sa;
    return undefined;
  }

  flush(): void {
    if (this.outbound.length === 0) return;
    const sa = this.current[0];
    const batch = this.outbound.splice(0);
    this.port.send(sa?.path.carrier ?? 'udp', batch);
  }

  /** EspReceiver: `payload` has 40 bytes of room in front (for a rebuilt header), then the opened payload. */
  receive(inbound: EspInboundSa, buffer: Uint8Array, from: Endpoint, carrier: EspCarrier): void {
    const sa = this.sas.get(inbound.spi);
    if (!sa) return;
    // The opened packet is counted already: past the limit (this one included) nothing more is delivered.
    if (inbound.counters.bytes > sa.lifeBytes) {
      sa.expired = true;
      this.counters.expired++;
      return;
    }
    if (sa.outboundPending) {
      // The peer sends on the new SA, so it has installed it: ours goes out on it from now on.
      this.makeCurrent(sa);
    }
    // RFC 3948 §3: a NAT may change the peer's port or address; answer where authenticated packets come from.
    if (carrier === 'udp' && sa.path.carrier === 'udp') {
      const peer = sa.path.peer;
      if (peer.port !== from.port || peer.address !== from.address) sa.path.peer = from;
    }
    let packet: Uint8Array;
    if (sa.spec.mode === 'transport') {
      packet = rebuildHeader(buffer, inbound.opened.nextHeader, sa.peerBytes!, sa.localBytes!);
    } else {
      packet = buffer.subarray(40);
    }
    const header = readIpHeader(packet);
    if (!header) return;
    // 5a. A packet to a group goes to the replicator (which applies the site's policy itself), not the TUN side.
    const d0 = header.destination[0]!;
    if (header.family === 4 ? d0 >= 224 && d0 < 240 : d0 === 0xff) {
      const tap = this.groupTap?.();
      if (tap) {
        this.counters.groupsIn++;
        tap.fromSite(this, packet, header);
        this.tapped = tap;
        return;
      }
    }
    if (this.admit && !this.admit(packet, header, this)) {
      this.counters.refused++;
      return;
    }
    this.counters.packetsIn++;
    this.inbound.push(packet);
  }

  flushInbound(): void {
    const tap = this.tapped;
    if (tap) {
      this.tapped = undefined;
      tap.flush();
    }
    if (this.inbound.length === 0) return;
    this.deliverPackets(this.inbound.splice(0));
  }

  async close(): Promise<void> {
    for (const spi of [...this.sas.keys()]) this.removeChildSa(spi);
    return Promise.resolve();
  }
}

/** Writes an IPv4 (RFC 791) or IPv6 (RFC 8200) header before the transport payload at buffer[40..]. */
function rebuildHeader(
  buffer: Uint8Array,
  protocol: number,
  source: Uint8Array,
  destination: Uint8Array,
): Uint8Array {
  const payloadLength = buffer.length - 40;
  if (source.length === 4) {
    const h = buffer.subarray(20);
    h.fill(0, 0, 20);
    const total = 20 + payloadLength;
    h[0] = 0x45;
    h[2] = total >> 8;
    h[3] = total & 0xff;
    h[6] = 0x40; // DF
    h[8] = 64;
    h[9] = protocol;
    h.set(source, 12);
    h.set(destination, 16);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += (h[i]! << 8) | h[i + 1]!;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    const checksum = ~sum & 0xffff;
    h[10] = checksum >> 8;
    h[11] = checksum & 0xff;
    return h;
  }
  buffer.fill(0, 0, 40);
  buffer[0] = 0x60;
  buffer[4] = payloadLength >> 8;
  buffer[5] = payloadLength & 0xff;
  buffer[6] = protocol;
  buffer[7] = 64;
  buffer.set(source, 8);
  buffer.set(destination, 24);
  return buffer;
}
