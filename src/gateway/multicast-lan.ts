/**
 * The LAN bridge: an IGMP and MLD proxy (RFC 4605) with the LAN interface as its upstream and the overlay's
 * ports (member tunnels, the host) as its downstream. IPv4 and IPv6 alike.
 *
 *   1. Upstream membership (RFC 4605 §4.1): the proxy's membership on the LAN is the union of the overlay's
 *      joins: the first receiver of a routed group makes the gateway join it on the LAN, the last one leaving
 *      makes it leave (the kernel sends the reports and answers the LAN's querier).
 *   2. LAN → overlay (§4.2): a datagram to a group arriving on the LAN (its UDP checksum completed: see
 *      input()) enters the replicator from port
 *      `lan:IF`, like a packet from the host: TTL decremented, duplicate guard, rate limits, copied to the
 *      overlay's receivers of the group. A datagram whose source is in the overlay (`fromOverlay`) is a copy
 *      the gateway itself sent out, back by another path: it is dropped ('loop').
 *   3. Overlay → LAN (§4.2): the replicator copies every packet to a routed group from any other port to the
 *      upstream port (Replicator.setUpstream), joined on the LAN or not; LAN hosts that joined get it from
 *      their switch. Link-local groups (224.0.0.0/24; IPv6 scopes 1 and 2, ff01::/16 and ff02::/16) stay in
 *      the overlay.
 */
import { formatAddress } from '../net/ip.js';
import type { IpHeader } from '../net/ip-packet.js';
import { fillUdp4Checksum, fillUdp6Checksum, isLinkLocalGroup, type Family } from '../multicast/messages.js';
import { groupKey, type QuerierAction } from '../multicast/querier.js';
import type { MulticastPort, Replicator } from './multicast.js';

/** What the bridge needs of the LAN interface (io/multicast-lan.ts LanMulticastSocket; a double in tests). */
export interface LanSocket {
  readonly name: string;
  /** Joins or leaves a group: 4 bytes IPv4 (IGMP), 16 bytes IPv6 (MLD). */
  membership(group: Uint8Array, join: boolean): boolean;
  /** Sends one IPv4 or IPv6 packet, its header included. */
  send(packet: Uint8Array): void;
}

/** Groups that never leave their link (or node): RFC 5771 §4 for IPv4, RFC 4291 §2.7 scopes 1-2 for IPv6. */
function staysLocal(family: Family, group: Uint8Array): boolean {
  return family === 4 ? isLinkLocalGroup(4, group) : (group[1]! & 0x0f) <= 2;
}

export class LanBridge {
  readonly port: MulticastPort;
  readonly counters = { received: 0, loop: 0, malformed: 0, joins: 0, leaves: 0 };
  /** Groups joined on the LAN (group key → address). */
  private readonly joined = new Map<number | string, Uint8Array>();

  constructor(
    private readonly replicator: Replicator,
    private readonly socket: LanSocket,
    /** Whether a source address (4 or 16 bytes) is the overlay's (the member subnets, the gateway's address). */
    private readonly fromOverlay: (source: Uint8Array) => boolean,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.port = {
      id: `lan:${socket.name}`,
      families: [],
      send: (packet: Uint8Array, header: IpHeader): void => {
        if (!staysLocal(header.family, header.destination)) socket.send(packet.subarray(0, header.length));
      },
      flush: (): void => undefined,
    };
    replicator.setUpstream(this.port);
  }

  /** Follows the querier's joins and leaves (Replicator's onAction): step 1. */
  onAction(a: QuerierAction<MulticastPort>): void {
    if ((a.type !== 'joined' && a.type !== 'left') || staysLocal(a.family, a.group)) return;
    const key = groupKey(a.family, a.group);
    const wanted = (this.replicator.querier.group(key)?.receivers.length ?? 0) > 0;
    if (wanted === this.joined.has(key)) return;
    const group = a.group.slice(0, a.family === 4 ? 4 : 16);
    if (wanted) this.joined.set(key, group);
    else this.joined.delete(key);
    const ok = this.socket.membership(group, wanted);
    if (wanted) this.counters.joins++;
    else this.counters.leaves++;
    const text = formatAddress({ family: a.family, bytes: group });
    this.log(
      `multicast: ${this.port.id} ${wanted ? 'joined' : 'left'} ${text}${ok ? '' : ' (refused by the kernel)'}`,
    );
  }

  /** A batch of IPv4 and IPv6 packets to groups from the LAN: step 2. */
  input(packets: readonly Uint8Array[], now: number): void {
    for (const packet of packets) {
      this.counters.received++;
      if (packet.length >= 40 && packet[0]! >> 4 === 6) {
        this.input6(packet, now);
        continue;
      }
      const length = packet.length >= 20 ? (packet[2]! << 8) | packet[3]! : 0;
      if (length < 20 || length > packet.length || packet[0]! >> 4 !== 4) {
        this.counters.malformed++;
        continue;
      }
      const header: IpHeader = {
        family: 4,
        length,
        source: packet.subarray(12, 16),
        destination: packet.subarray(16, 20),
      };
      if (this.fromOverlay(header.source)) {
        this.counters.loop++;
        this.replicator.dropFrom(this.port, 'loop');
        continue;
      }
      // A datagram from a local sender (a VM or container on a veth or bridge) may carry a checksum the
      // kernel was to finish on transmit (checksum offload); the receiving member's kernel would drop it.
      const ihl = (packet[0]! & 0x0f) * 4;
      const unfragmented = (packet[6]! & 0x3f) === 0 && packet[7] === 0;
      if (packet[9] === 17 && unfragmented && ihl >= 20) fillUdp4Checksum(packet, ihl, length);
      this.replicator.receive(packet, header, this.port, now);
    }
    this.replicator.flush();
  }

  /** An IPv6 packet from the LAN (io/multicast-lan.ts passes UDP to groups only, without extension headers). */
  private input6(packet: Uint8Array, now: number): void {
    const length = 40 + ((packet[4]! << 8) | packet[5]!);
    if (length > packet.length || packet[24] !== 0xff) {
      this.counters.malformed++;
      return;
    }
    const header: IpHeader = {
      family: 6,
      length,
      source: packet.subarray(8, 24),
      destination: packet.subarray(24, 40),
    };
    if (this.fromOverlay(header.source)) {
      this.counters.loop++;
      this.replicator.dropFrom(this.port, 'loop');
      return;
    }
    // As for IPv4 (checksum offload of a local sender); IPv6 UDP always carries a checksum (RFC 8200 §8.1).
    if (packet[6] === 17) fillUdp6Checksum(packet, length);
    this.replicator.receive(packet, header, this.port, now);
  }

  /** Leaves every group on the LAN and stops being the replicator's upstream. */
  close(): void {
    this.replicator.setUpstream(null);
    for (const group of this.joined.values()) this.socket.membership(group, false);
    this.joined.clear();
  }
}
