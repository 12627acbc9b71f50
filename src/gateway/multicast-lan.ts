/**
 * The LAN bridge: an IGMP proxy (RFC 4605) with the LAN interface as its upstream and the overlay's ports
 * (member tunnels, the host) as its downstream. IPv4 only.
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
 *      their switch. Link-local groups (224.0.0.0/24) stay in the overlay.
 */
import type { IpHeader } from '../net/ip-packet.js';
import { fillUdp4Checksum, isLinkLocalGroup } from '../multicast/messages.js';
import { groupKey, type QuerierAction } from '../multicast/querier.js';
import type { MulticastPort, Replicator } from './multicast.js';

/** What the bridge needs of the LAN interface (io/multicast-lan.ts LanMulticastSocket; a double in tests). */
export interface LanSocket {
  readonly name: string;
  membership(group: Uint8Array, join: boolean): boolean;
  send(packet: Uint8Array): void;
}

export class LanBridge {
  readonly port: MulticastPort;
  readonly counters = { received: 0, loop: 0, malformed: 0, joins: 0, leaves: 0 };
  /** Groups joined on the LAN (group key → address). */
  private readonly joined = new Map<number | string, Uint8Array>();

  constructor(
    private readonly replicator: Replicator,
    private readonly socket: LanSocket,
    /** Whether an IPv4 source address is the overlay's (the member subnets, the gateway's tunnel address). */
    private readonly fromOverlay: (source: Uint8Array) => boolean,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.port = {
      id: `lan:${socket.name}`,
      families: [],
      send: (packet: Uint8Array, header: IpHeader): void => {
        if (header.family === 4) socket.send(packet.subarray(0, header.length));
      },
      flush: (): void => undefined,
    };
    replicator.setUpstream(this.port);
  }

  /** Follows the querier's joins and leaves (Replicator's onAction): step 1. */
  onAction(a: QuerierAction<MulticastPort>): void {
    if ((a.type !== 'joined' && a.type !== 'left') || a.family !== 4 || isLinkLocalGroup(4, a.group)) return;
    const key = groupKey(4, a.group);
    const wanted = (this.replicator.querier.group(key)?.receivers.length ?? 0) > 0;
    if (wanted === this.joined.has(key)) return;
    const group = a.group.slice(0, 4);
    if (wanted) this.joined.set(key, group);
    else this.joined.delete(key);
    const ok = this.socket.membership(group, wanted);
    if (wanted) this.counters.joins++;
    else this.counters.leaves++;
    const text = [...group].join('.');
    this.log(
      `multicast: ${this.port.id} ${wanted ? 'joined' : 'left'} ${text}${ok ? '' : ' (refused by the kernel)'}`,
    );
  }

  /** A batch of IPv4 packets to groups from the LAN: step 2. */
  input(packets: readonly Uint8Array[], now: number): void {
    for (const packet of packets) {
      this.counters.received++;
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

  /** Leaves every group on the LAN and stops being the replicator's upstream. */
  close(): void {
    this.replicator.setUpstream(null);
    for (const group of this.joined.values()) this.socket.membership(group, false);
    this.joined.clear();
  }
}
