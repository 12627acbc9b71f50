/**
 * Multicast replication in the gateway: a packet to an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) group, from a
 * receiver port (a member's tunnel, the gateway host through the TUN device), is copied to every other port
 * joined to the group. A port is a receiver with an id and a way to send one packet to exactly it.
 *
 * For each packet to a group, in this order:
 *   1. IGMP/MLD goes to the querier (membership.ts of the core) and is never forwarded; hostile input is a
 *      typed drop, counted;
 *   2. a group nobody but the sender joined costs a table lookup, and the packet is dropped ('no-receivers');
 *   3. link-local groups (224.0.0.0/24, ff02::/16) keep their TTL/hop limit; for routed groups a TTL of 1
 *      does not leave the sender's link, and a higher one is decremented once, in place;
 *   4. the duplicate guard drops a packet seen again within a short window;
 *   5. policy: the sender may send to the group (the member firewall, as for unicast with the group as
 *      destination);
 *   6. the sender's and the group's token buckets;
 *   7. one copy per receiver port, never back to the sender, each receiver checked by policy; the packet is
 *      not copied: each port seals it into its own buffer (or queues a view) at send();
 *   8. the ports sent to are flushed once, at the end of the caller's batch (flush()).
 * The querier's actions (queries to ports) are carried out at tick() and when a report arrives.
 */
import {
  DEFAULT_GROUP_BURST,
  DEFAULT_GROUP_RATE,
  DEFAULT_SOURCE_BURST,
  DEFAULT_SOURCE_RATE,
} from '../multicast/constants.js';
import { DuplicateGuard, fingerprint } from '../multicast/duplicates.js';
import { TokenBuckets } from '../multicast/limits.js';
import {
  buildQuery,
  isLinkLocalGroup,
  isMulticast,
  looksLikeMembership,
  MEMBERSHIP_DROPS,
  parseMembership,
  type Family,
  type MembershipDrop,
} from '../multicast/messages.js';
import { groupKey, Querier, type QuerierAction, type QuerierConfig } from '../multicast/querier.js';
import type { IpHeader } from '../net/ip-packet.js';
import { formatAddress } from '../net/ip.js';

/** A receiver (and sender) of multicast: a WireGuard peer, an OpenVPN session, an IPsec site, the host. */
export interface MulticastPort {
  /** Stable and unique ("wg:alice", "host"). */
  readonly id: string;
  /** Families the querier queries on this port. */
  readonly families: readonly Family[];
  /**
   * The source of the queries sent to this port, when not the replicator's (`querySource4`/`querySource6`):
   * the gateway's host must not be queried from an address of its own (see Gateway.attachMulticast).
   */
  readonly querySource4?: Uint8Array;
  readonly querySource6?: Uint8Array;
  /**
   * Queues `packet` (its first `header.length` bytes) for exactly this receiver. The port must not keep the
   * buffer past flush(): it is the sender's, and other ports get the same bytes.
   */
  send(packet: Uint8Array, header: IpHeader, now: number): void;
  /** Sends what send() queued. */
  flush(): void;
}

/** Policy for multicast, injected: the gateway decides nothing about members itself. */
export interface MulticastPolicy {
  /** May `source` send this packet to its group? (A drop is counted here and by the policy's owner.) */
  maySend(source: MulticastPort, packet: Uint8Array, header: IpHeader, now: number): boolean;
  /** May `receiver` get a copy of what `source` sent? */
  mayReceive(source: MulticastPort, receiver: MulticastPort, packet: Uint8Array, header: IpHeader): boolean;
}

const ALLOW_ALL: MulticastPolicy = { maySend: () => true, mayReceive: () => true };

export interface ReplicatorOptions {
  readonly querier?: Partial<QuerierConfig>;
  readonly policy?: MulticastPolicy;
  /** The gateway's address in the tunnels, source of IGMP queries (null: no IPv4 queries). */
  readonly querySource4?: Uint8Array | null;
  /** The gateway's IPv6 link-local address, source of MLD queries (RFC 3810 §5.1.14; null: none). */
  readonly querySource6?: Uint8Array | null;
  readonly sourceRate?: number;
  readonly sourceBurst?: number;
  readonly groupRate?: number;
  readonly groupBurst?: number;
  /** Membership changes and queries, as they happen (for logs). */
  readonly onAction?: (action: QuerierAction<MulticastPort>) => void;
}

export type ReplicationDrop =
  | 'no-receivers'
  | 'ttl'
  | 'duplicate'
  | 'policy-send'
  | 'policy-receive'
  | 'rate-source'
  | 'rate-group'
  | 'query-from-port'
  | 'malformed'
  | 'loop';

/** Figures of one port, as a sender and as a receiver. */
interface PortStats {
  /** Packets it sent to groups (membership messages not counted). */
  sent: number;
  /** Copies sent to it. */
  received: number;
  /** Its packets dropped, by reason. */
  readonly drops: Partial<Record<ReplicationDrop, number>>;
}

/** Figures of one joined group; kept while the group has receivers. */
interface GroupStats {
  packets: number;
  copies: number;
  readonly senders: Map<MulticastPort, number>;
}

/** What `weft multicast list` and GET /api/v1/multicast show: the replicator's state, plain data. */
export interface MulticastSnapshot {
  readonly counters: { readonly packets: number; readonly copies: number; readonly reports: number };
  /** Nonzero drop counters: replication (ReplicationDrop) and IGMP/MLD parsing (MembershipDrop). */
  readonly drops: Readonly<Record<string, number>>;
  readonly groups: readonly {
    readonly group: string;
    /** Receivers; `expiresInS` null for a static membership. */
    readonly receivers: readonly { readonly port: string; readonly expiresInS: number | null }[];
    readonly packets: number;
    readonly copies: number;
    readonly senders: readonly { readonly port: string; readonly packets: number }[];
  }[];
  readonly ports: readonly {
    readonly port: string;
    readonly sent: number;
    readonly received: number;
    readonly drops: Readonly<Record<string, number>>;
  }[];
}

export class Replicator {
  readonly querier: Querier<MulticastPort>;
  readonly counters = { packets: 0, copies: 0, reports: 0 };
  readonly drops: Record<ReplicationDrop, number> = {
    'no-receivers': 0,
    ttl: 0,
    duplicate: 0,
    'policy-send': 0,
    'policy-receive': 0,
    'rate-source': 0,
    'rate-group': 0,
    'query-from-port': 0,
    malformed: 0,
    loop: 0,
  };
  readonly membershipDrops = Object.fromEntries(MEMBERSHIP_DROPS.map((d) => [d, 0])) as Record<
    MembershipDrop,
    number
  >;
  /** Settable after construction: the policy's owner usually needs the replicator first. */
  policy: MulticastPolicy;
  private readonly duplicates = new DuplicateGuard();
  private readonly sourceBuckets: TokenBuckets<MulticastPort>;
  private readonly groupBuckets: TokenBuckets<number | string>;
  private readonly querySource4: Uint8Array | null;
  private readonly querySource6: Uint8Array | null;
  private readonly onAction: ((action: QuerierAction<MulticastPort>) => void) | undefined;
  private readonly touched: MulticastPort[] = [];
  private readonly actions: QuerierAction<MulticastPort>[] = [];
  private readonly portStats = new Map<MulticastPort, PortStats>();
  private readonly groupStats = new Map<number | string, GroupStats>();
  /**
   * The upstream port of an IGMP/MLD proxy (RFC 4605 §4.1: a LAN interface), or null. It gets a copy of every
   * packet to a routed group from any other port, joined or not (RFC 4605 §4.2: "forwarded to the upstream
   * interface"), and never one to a link-local group (those stay in the overlay).
   */
  private upstream: MulticastPort | null = null;

  constructor(options: ReplicatorOptions = {}) {
    this.querier = new Querier(options.querier);
    this.policy = options.policy ?? ALLOW_ALL;
    this.querySource4 = options.querySource4 ?? null;
    this.querySource6 = options.querySource6 ?? null;
    this.onAction = options.onAction;
    this.sourceBuckets = new TokenBuckets(
      options.sourceRate ?? DEFAULT_SOURCE_RATE,
      options.sourceBurst ?? DEFAULT_SOURCE_BURST,
    );
    this.groupBuckets = new TokenBuckets(
      options.groupRate ?? DEFAULT_GROUP_RATE,
      options.groupBurst ?? DEFAULT_GROUP_BURST,
    );
  }

  /** A receiver port comes up; it gets the querier's startup queries. */
  addPort(port: MulticastPort, now: number): void {
    const families = port.families.filter((f) => this.querySource(port, f) !== null);
    this.querier.addPort(port, families, now, this.actions);
    this.perform(now);
  }

  /** Makes `port` the upstream port (not queried; see `upstream`), or none. */
  setUpstream(port: MulticastPort | null): void {
    this.upstream = port;
  }

  removePort(port: MulticastPort): void {
    this.querier.removePort(port, this.actions);
    this.sourceBuckets.forget(port);
    this.portStats.delete(port);
    for (const g of this.groupStats.values()) g.senders.delete(port);
    this.perform(0);
    const at = this.touched.indexOf(port);
    if (at >= 0) this.touched.splice(at, 1);
  }

  /** Adds or removes a static membership (a host that never reports). */
  setStatic(port: MulticastPort, family: Family, group: Uint8Array, on: boolean): void {
    this.querier.setStatic(port, family, group, on, this.actions);
    this.perform(0);
  }

  /** Runs the querier's timers: due queries go out at once. */
  tick(now: number): void {
    this.querier.tick(now, this.actions);
    this.perform(now);
    this.flush();
  }

  /**
   * A packet to a multicast group from `source` (see the list at the top). Returns false when nothing was
   * copied. `packet` may be modified (TTL, checksum).
   */
  receive(packet: Uint8Array, header: IpHeader, source: MulticastPort, now: number): boolean {
    this.counters.packets++;
    if (looksLikeMembership(packet)) return this.membership(packet, source, now);
    const family = header.family;
    const group = header.destination;
    if (!isMulticast(family, group)) {
      this.drops.malformed++;
      return false;
    }
    const key = groupKey(family, group);
    const entry = this.querier.group(key);
    const receivers = entry?.receivers;
    const from = this.statsOf(source);
    from.sent++;
    const linkLocal = isLinkLocalGroup(family, group);
    const upstream = this.upstream !== null && this.upstream !== source && !linkLocal ? this.upstream : null;
    if (
      upstream === null &&
      (!receivers || receivers.length === 0 || (receivers.length === 1 && receivers[0] === source))
    )
      return this.dropped('no-receivers', from);
    const stats = this.groupStatsOf(key);
    stats.packets++;
    stats.senders.set(source, (stats.senders.get(source) ?? 0) + 1);
    if (!linkLocal && !this.decrementTtl(packet, family)) return this.dropped('ttl', from);
    if (!this.duplicates.firstTime(fingerprint(packet, header.length), now))
      return this.dropped('duplicate', from);
    const policy = this.policy;
    if (!policy.maySend(source, packet, header, now)) return this.dropped('policy-send', from);
    if (!this.sourceBuckets.take(source, now)) return this.dropped('rate-source', from);
    if (!this.groupBuckets.take(key, now)) return this.dropped('rate-group', from);
    const touched = this.touched;
    let copies = 0;
    const n = receivers?.length ?? 0;
    for (let i = 0; i <= n; i++) {
      const r = i < n ? receivers![i]! : upstream;
      if (r === null || r === source || (i < n && r === upstream)) continue;
      if (!policy.mayReceive(source, r, packet, header)) {
        this.dropped('policy-receive', from);
        continue;
      }
      r.send(packet, header, now);
      this.statsOf(r).received++;
      copies++;
      if (touched[touched.length - 1] !== r && !touched.includes(r)) touched.push(r);
    }
    this.counters.copies += copies;
    stats.copies += copies;
    return copies > 0;
  }

  /** The state for `weft multicast list` and the API (not on the packet path). */
  snapshot(now: number): MulticastSnapshot {
    const drops: Record<string, number> = {};
    for (const [k, v] of Object.entries({ ...this.drops, ...this.membershipDrops })) if (v > 0) drops[k] = v;
    const groups: MulticastSnapshot['groups'][number][] = [];
    const live = new Set<number | string>();
    for (const g of this.querier.allGroups()) {
      if (g.receivers.length === 0) continue;
      const key = groupKey(g.family, g.address);
      live.add(key);
      const stats = this.groupStats.get(key);
      groups.push({
        group: formatAddress({ family: g.family, bytes: g.address }),
        receivers: [...g.byPort.values()].map((m) => {
          const until = Math.max(...m.reporters.values());
          return {
            port: m.port.id,
            expiresInS: until === Infinity ? null : Math.max(0, Math.round((until - now) / 1000)),
          };
        }),
        packets: stats?.packets ?? 0,
        copies: stats?.copies ?? 0,
        senders: [...(stats?.senders ?? [])].map(([p, n]) => ({ port: p.id, packets: n })),
      });
    }
    // Figures of groups nobody receives any more are forgotten (the table stays as large as the joins).
    for (const key of this.groupStats.keys()) if (!live.has(key)) this.groupStats.delete(key);
    groups.sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
    const ports = [...this.portStats]
      .map(([p, s]) => ({ port: p.id, sent: s.sent, received: s.received, drops: { ...s.drops } }))
      .sort((a, b) => (a.port < b.port ? -1 : a.port > b.port ? 1 : 0));
    return { counters: { ...this.counters }, drops, groups, ports };
  }

  private statsOf(port: MulticastPort): PortStats {
    let s = this.portStats.get(port);
    if (s === undefined) {
      s = { sent: 0, received: 0, drops: {} };
      this.portStats.set(port, s);
    }
    return s;
  }

  private groupStatsOf(key: number | string): GroupStats {
    let s = this.groupStats.get(key);
    if (s === undefined) {
      s = { packets: 0, copies: 0, senders: new Map() };
      this.groupStats.set(key, s);
    }
    return s;
  }

  /** Counts a drop of a packet `port` sent, decided before it reached receive() (e.g. the LAN's 'loop'). */
  dropFrom(port: MulticastPort, reason: ReplicationDrop): void {
    this.dropped(reason, this.statsOf(port));
  }

  /** Counts a drop of `from`'s packet; false (nothing copied). */
  private dropped(reason: ReplicationDrop, from: PortStats): false {
    this.drops[reason]++;
    from.drops[reason] = (from.drops[reason] ?? 0) + 1;
    return false;
  }

  /** Flushes every port sent to since the last call (the end of the caller's batch). */
  flush(): void {
    const touched = this.touched;
    if (touched.length === 0) return;
    try {
      for (const port of touched) port.flush();
    } finally {
      touched.length = 0;
    }
  }

  /**
   * RFC 1812 §5.3.1 / RFC 8200 §3: a forwarded packet's TTL / hop limit goes down by one, and a packet that
   * would reach 0 is not forwarded. IPv4's header checksum is updated incrementally (RFC 1624 eq. 3).
   */
  private decrementTtl(packet: Uint8Array, family: Family): boolean {
    if (family === 6) {
      if (packet[7]! <= 1) return false;
      packet[7]!--;
      return true;
    }
    const ttl = packet[8]!;
    if (ttl <= 1) return false;
    packet[8] = ttl - 1;
    // The 16-bit word holding TTL (high byte) and protocol went down by 0x0100: HC' = ~(~HC + ~m + m').
    const old = (packet[10]! << 8) | packet[11]!;
    let sum = (~old & 0xffff) + (~(ttl << 8) & 0xffff) + ((ttl - 1) << 8);
    sum = (sum & 0xffff) + (sum >>> 16);
    sum = (sum & 0xffff) + (sum >>> 16);
    const next = ~sum & 0xffff;
    packet[10] = next >> 8;
    packet[11] = next & 0xff;
    return true;
  }

  private membership(packet: Uint8Array, source: MulticastPort, now: number): boolean {
    const parsed = parseMembership(packet);
    if (!parsed.ok) {
      this.membershipDrops[parsed.reason]++;
      return false;
    }
    if (parsed.message.kind === 'query') {
      // Another querier behind a tunnel: this gateway stays the querier of its ports (its queries win).
      this.drops['query-from-port']++;
      return false;
    }
    this.counters.reports++;
    this.querier.receive(parsed.message, source, now, this.actions);
    this.perform(now);
    return false;
  }

  /** Where queries to `port` come from: its own source if it names one, else the replicator's. */
  private querySource(port: MulticastPort, family: Family): Uint8Array | null {
    return family === 4 ? (port.querySource4 ?? this.querySource4) : (port.querySource6 ?? this.querySource6);
  }

  private perform(now: number): void {
    const actions = this.actions;
    if (actions.length === 0) return;
    const c = this.querier.config;
    for (const a of actions) {
      this.onAction?.(a);
      if (a.type !== 'query') continue;
      const sourceAddress = this.querySource(a.port, a.family);
      if (sourceAddress === null) continue;
      const query = buildQuery(a.family, sourceAddress, {
        group: a.group,
        maxResponseMs: a.maxResponseMs,
        robustness: c.robustness,
        queryIntervalMs: c.queryIntervalMs,
        suppress: a.suppress,
      });
      const header: IpHeader = {
        family: a.family,
        length: query.length,
        source: query.subarray(a.family === 4 ? 12 : 8, a.family === 4 ? 16 : 24),
        destination: query.subarray(a.family === 4 ? 16 : 24, a.family === 4 ? 20 : 40),
      };
      a.port.send(query, header, now);
      const touched = this.touched;
      if (!touched.includes(a.port)) touched.push(a.port);
    }
    actions.length = 0;
  }
}

/** Whether a packet's destination is a multicast group (the router's and the tunnels' one-byte test). */
export function toGroup(header: IpHeader): boolean {
  const d = header.destination;
  return header.family === 4 ? (d[0]! & 0xf0) === 0xe0 : d[0] === 0xff;
}
