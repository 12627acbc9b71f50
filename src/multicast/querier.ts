/**
 * The gateway as IGMP/MLD querier on every receiver port (each tunnel peer is a link of its own), and the
 * membership table it keeps: group → receiver ports, with expiry. Sans-IO: reports and the time come in,
 * actions (send a query to a port; a port joined or left a group) go out.
 *
 * 1. A new port gets the startup queries: a general query now and robustness−1 more, a quarter of the query
 *    interval apart (RFC 3376 §8.6-8.7, RFC 3810 §9.6-9.7); then one every query interval (§8.2 / §9.2).
 * 2. A join (IGMPv1/v2 report, MLDv1 report, a v3/v2 record asking for the group) sets the reporter's
 *    membership to expire after the group membership interval, robustness × query interval + query response
 *    interval (§8.4 / §9.4); general queries keep it alive while the host stays joined.
 * 3. IGMPv3/MLDv2 leaves (INCLUDE{} / TO_IN{}) are tracked per reporting host, so a host's leave ends its
 *    membership at once; the port leaves the group when no host behind it is left (explicit tracking, which
 *    RFC 3376 §6.4 permits; the port is a point-to-point link, usually with a single host).
 * 4. An IGMPv2 leave / MLDv1 done cannot say whether others remain: the group's membership on that port is
 *    lowered to the last member query time, and last member query count group-specific queries go out, last
 *    member query interval apart (RFC 2236 §3, §6; RFC 2710 §4; RFC 3376 §6.6.3.1); a report in answer keeps
 *    the membership.
 * 5. Static memberships (for hosts that never report) never expire.
 * A port's groups are bounded (MAX_GROUPS_PER_PORT), and so is the table (MAX_GROUPS); joins beyond are
 * counted and ignored.
 */
import {
  DEFAULT_LAST_MEMBER_QUERY_INTERVAL_MS,
  DEFAULT_QUERY_INTERVAL_MS,
  DEFAULT_QUERY_RESPONSE_INTERVAL_MS,
  DEFAULT_ROBUSTNESS,
  MAX_GROUPS,
  MAX_GROUPS_PER_PORT,
} from './constants.js';
import type { Family, MembershipReport } from './messages.js';

export interface QuerierConfig {
  /** Robustness variable (RFC 3376 §8.1): at least 1; 2 by default. */
  readonly robustness: number;
  readonly queryIntervalMs: number;
  readonly queryResponseIntervalMs: number;
  readonly lastMemberQueryIntervalMs: number;
  /** Last member query count (§8.9); the robustness variable by default. */
  readonly lastMemberQueryCount: number;
}

export function querierConfig(partial: Partial<QuerierConfig> = {}): QuerierConfig {
  const robustness = Math.max(1, Math.floor(partial.robustness ?? DEFAULT_ROBUSTNESS));
  const queryIntervalMs = partial.queryIntervalMs ?? DEFAULT_QUERY_INTERVAL_MS;
  // The response interval must be shorter than the query interval (RFC 3376 §8.3).
  const queryResponseIntervalMs = Math.min(
    partial.queryResponseIntervalMs ?? DEFAULT_QUERY_RESPONSE_INTERVAL_MS,
    queryIntervalMs,
  );
  return {
    robustness,
    queryIntervalMs,
    queryResponseIntervalMs,
    lastMemberQueryIntervalMs: partial.lastMemberQueryIntervalMs ?? DEFAULT_LAST_MEMBER_QUERY_INTERVAL_MS,
    lastMemberQueryCount: Math.max(1, Math.floor(partial.lastMemberQueryCount ?? robustness)),
  };
}

/** Group membership interval (RFC 3376 §8.4, RFC 3810 §9.4). */
export function groupMembershipInterval(c: QuerierConfig): number {
  return c.robustness * c.queryIntervalMs + c.queryResponseIntervalMs;
}

/** A receiver: anything with a stable id (a WireGuard peer, an OpenVPN session, an IPsec site, the host). */
export interface PortId {
  readonly id: string;
}

export type QuerierAction<P extends PortId> =
  | {
      readonly type: 'query';
      readonly port: P;
      readonly family: Family;
      /** null: a general query. */
      readonly group: Uint8Array | null;
      readonly maxResponseMs: number;
      /** S flag: repeats of a group-specific query (RFC 3376 §6.6.3.1). */
      readonly suppress: boolean;
    }
  | { readonly type: 'joined'; readonly port: P; readonly family: Family; readonly group: Uint8Array }
  | {
      readonly type: 'left';
      readonly port: P;
      readonly family: Family;
      readonly group: Uint8Array;
      readonly why: 'leave' | 'expired' | 'port-removed' | 'static-removed';
    };

/** Reporter key of a static membership. */
const STATIC = 'static';

interface Membership<P extends PortId> {
  readonly port: P;
  /** Reporting host (hex of its address) or STATIC → expiry (ms; Infinity for static). */
  readonly reporters: Map<string, number>;
}

export interface Group<P extends PortId> {
  readonly family: Family;
  readonly address: Uint8Array;
  readonly byPort: Map<P, Membership<P>>;
  /** The receiver ports, for replication to iterate without allocating (kept in step with byPort). */
  readonly receivers: P[];
}

interface PortState {
  readonly families: readonly Family[];
  nextGeneral: number;
  startupLeft: number;
  groups: number;
}

interface LastMemberQueries<P extends PortId> {
  readonly port: P;
  readonly family: Family;
  readonly group: Uint8Array;
  left: number;
  nextAt: number;
}

/** A group's table key: the IPv4 address as a number, an IPv6 address as hex. */
export type GroupKey = number | string;

export function groupKey(family: Family, address: Uint8Array): GroupKey {
  if (family === 4)
    return ((address[0]! << 24) | (address[1]! << 16) | (address[2]! << 8) | address[3]!) >>> 0;
  let s = '';
  for (let i = 0; i < 16; i++) {
    const b = address[i]!;
    s += (b < 16 ? '0' : '') + b.toString(16);
  }
  return s;
}

function hex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

export class Querier<P extends PortId> {
  /** Replaced by configure(); read at each use, so new timers take effect from the next query or report. */
  config: QuerierConfig;
  readonly counters = {
    reports: 0,
    joins: 0,
    leaves: 0,
    expiries: 0,
    queriesSent: 0,
    tooManyGroups: 0,
    unknownPort: 0,
  };
  private readonly groups = new Map<GroupKey, Group<P>>();
  private readonly ports = new Map<P, PortState>();
  private readonly pendingQueries: LastMemberQueries<P>[] = [];

  constructor(config: Partial<QuerierConfig> = {}) {
    this.config = querierConfig(config);
  }

  /**
   * New timers (the settings changed): memberships already learned keep their expiry; the next general query
   * of each port is no later than one new query interval away.
   */
  configure(partial: Partial<QuerierConfig>, now: number): void {
    this.config = querierConfig(partial);
    const interval = this.config.queryIntervalMs;
    for (const s of this.ports.values()) s.nextGeneral = Math.min(s.nextGeneral, now + interval);
  }

  get groupCount(): number {
    return this.groups.size;
  }

  /** The group's entry (receivers), or undefined: the replicator's per-packet lookup. */
  group(key: GroupKey): Group<P> | undefined {
    return this.groups.get(key);
  }

  allGroups(): IterableIterator<Group<P>> {
    return this.groups.values();
  }

  hasPort(port: P): boolean {
    return this.ports.has(port);
  }

  /** A receiver port comes up: it gets the startup queries (the first one now). */
  addPort(
    port: P,
    families: readonly Family[],
    now: number,
    out: QuerierAction<P>[] = [],
  ): QuerierAction<P>[] {
    if (this.ports.has(port)) return out;
    this.ports.set(port, {
      families,
      nextGeneral: now,
      startupLeft: this.config.robustness,
      groups: 0,
    });
    this.generalQueries(now, out);
    return out;
  }

  /** A receiver port goes away: its memberships end. */
  removePort(port: P, out: QuerierAction<P>[] = []): QuerierAction<P>[] {
    if (!this.ports.delete(port)) return out;
    for (const [key, g] of this.groups) {
      if (g.byPort.has(port)) this.dropMembership(key, g, port, 'port-removed', out);
    }
    for (let i = this.pendingQueries.length - 1; i >= 0; i--)
      if (this.pendingQueries[i]!.port === port) this.pendingQueries.splice(i, 1);
    return out;
  }

  /** Adds or removes a membership that never expires (a host that never reports). */
  setStatic(
    port: P,
    family: Family,
    group: Uint8Array,
    on: boolean,
    out: QuerierAction<P>[] = [],
  ): QuerierAction<P>[] {
    if (on) this.join(port, family, group, STATIC, Infinity, out);
    else this.leaveReporter(port, family, group, STATIC, 'static-removed', out);
    return out;
  }

  /** A report from a host behind `port`. */
  receive(report: MembershipReport, port: P, now: number, out: QuerierAction<P>[] = []): QuerierAction<P>[] {
    if (!this.ports.has(port)) {
      this.counters.unknownPort++;
      return out;
    }
    this.counters.reports++;
    const reporter = hex(report.source);
    const gmi = groupMembershipInterval(this.config);
    const explicit = report.version === 3 || (report.family === 6 && report.version === 2);
    for (const c of report.changes) {
      if (c.change === 'join') this.join(port, report.family, c.group, reporter, now + gmi, out);
      else if (c.change === 'leave') {
        this.counters.leaves++;
        if (explicit) this.leaveReporter(port, report.family, c.group, reporter, 'leave', out);
        else this.lastMemberQueries(port, report.family, c.group, now, out);
      }
    }
    return out;
  }

  /** Sends due queries and expires memberships. */
  tick(now: number, out: QuerierAction<P>[] = []): QuerierAction<P>[] {
    this.generalQueries(now, out);
    const pending = this.pendingQueries;
    for (let i = 0; i < pending.length;) {
      const q = pending[i]!;
      if (q.nextAt <= now) {
        this.groupQuery(q, true, out);
        q.left--;
        q.nextAt = now + this.config.lastMemberQueryIntervalMs;
        if (q.left <= 0) {
          pending.splice(i, 1);
          continue;
        }
      }
      i++;
    }
    for (const [key, g] of this.groups) {
      for (const [port, m] of g.byPort) {
        for (const [reporter, expiry] of m.reporters) if (expiry <= now) m.reporters.delete(reporter);
        if (m.reporters.size === 0) {
          this.counters.expiries++;
          this.dropMembership(key, g, port, 'expired', out);
        }
      }
    }
    return out;
  }

  /** The earliest time tick() has work (a query or an expiry), or Infinity. */
  nextDeadline(): number {
    let next = Infinity;
    for (const s of this.ports.values()) next = Math.min(next, s.nextGeneral);
    for (const q of this.pendingQueries) next = Math.min(next, q.nextAt);
    for (const g of this.groups.values())
      for (const m of g.byPort.values()) for (const e of m.reporters.values()) next = Math.min(next, e);
    return next;
  }

  private generalQueries(now: number, out: QuerierAction<P>[]): void {
    const c = this.config;
    for (const [port, s] of this.ports) {
      if (s.nextGeneral > now) continue;
      for (const family of s.families) {
        this.counters.queriesSent++;
        out.push({
          type: 'query',
          port,
          family,
          group: null,
          maxResponseMs: c.queryResponseIntervalMs,
          suppress: false,
        });
      }
      if (s.startupLeft > 0) s.startupLeft--;
      s.nextGeneral = now + (s.startupLeft > 0 ? Math.floor(c.queryIntervalMs / 4) : c.queryIntervalMs);
    }
  }

  private groupQuery(q: LastMemberQueries<P>, suppress: boolean, out: QuerierAction<P>[]): void {
    this.counters.queriesSent++;
    out.push({
      type: 'query',
      port: q.port,
      family: q.family,
      group: q.group,
      maxResponseMs: this.config.lastMemberQueryIntervalMs,
      suppress,
    });
  }

  private join(
    port: P,
    family: Family,
    address: Uint8Array,
    reporter: string,
    expiry: number,
    out: QuerierAction<P>[],
  ): void {
    const state = this.ports.get(port);
    if (!state) {
      this.counters.unknownPort++;
      return;
    }
    const key = groupKey(family, address);
    let g = this.groups.get(key);
    if (!g) {
      if (this.groups.size >= MAX_GROUPS) {
        this.counters.tooManyGroups++;
        return;
      }
      g = { family, address: address.slice(), byPort: new Map(), receivers: [] };
      this.groups.set(key, g);
    }
    let m = g.byPort.get(port);
    if (!m) {
      if (state.groups >= MAX_GROUPS_PER_PORT) {
        this.counters.tooManyGroups++;
        if (g.byPort.size === 0) this.groups.delete(key);
        return;
      }
      m = { port, reporters: new Map() };
      g.byPort.set(port, m);
      g.receivers.push(port);
      state.groups++;
      this.counters.joins++;
      out.push({ type: 'joined', port, family, group: g.address });
    }
    const before = m.reporters.get(reporter) ?? -Infinity;
    m.reporters.set(reporter, Math.max(before, expiry));
    // A report answers the last member queries: they stop (RFC 3376 §6.6.3.1 ends them with the timer).
    const pending = this.pendingQueries;
    for (let i = pending.length - 1; i >= 0; i--) {
      const q = pending[i]!;
      if (q.port === port && groupKey(q.family, q.group) === key) pending.splice(i, 1);
    }
  }

  private leaveReporter(
    port: P,
    family: Family,
    address: Uint8Array,
    reporter: string,
    why: 'leave' | 'static-removed',
    out: QuerierAction<P>[],
  ): void {
    const key = groupKey(family, address);
    const g = this.groups.get(key);
    const m = g?.byPort.get(port);
    if (!g || !m) return;
    m.reporters.delete(reporter);
    if (m.reporters.size === 0) this.dropMembership(key, g, port, why, out);
  }

  private lastMemberQueries(
    port: P,
    family: Family,
    address: Uint8Array,
    now: number,
    out: QuerierAction<P>[],
  ): void {
    const key = groupKey(family, address);
    const g = this.groups.get(key);
    const m = g?.byPort.get(port);
    if (!g || !m) return;
    const c = this.config;
    const lastMemberQueryTime = c.lastMemberQueryCount * c.lastMemberQueryIntervalMs;
    for (const [reporter, expiry] of m.reporters)
      if (reporter !== STATIC) m.reporters.set(reporter, Math.min(expiry, now + lastMemberQueryTime));
    if (this.pendingQueries.some((q) => q.port === port && groupKey(q.family, q.group) === key)) return;
    const q: LastMemberQueries<P> = {
      port,
      family,
      group: g.address,
      left: c.lastMemberQueryCount - 1,
      nextAt: now + c.lastMemberQueryIntervalMs,
    };
    this.groupQuery(q, false, out);
    if (q.left > 0) this.pendingQueries.push(q);
  }

  private dropMembership(
    key: GroupKey,
    g: Group<P>,
    port: P,
    why: 'leave' | 'expired' | 'port-removed' | 'static-removed',
    out: QuerierAction<P>[],
  ): void {
    g.byPort.delete(port);
    const at = g.receivers.indexOf(port);
    if (at >= 0) g.receivers.splice(at, 1);
    const state = this.ports.get(port);
    if (state) state.groups--;
    if (g.byPort.size === 0) this.groups.delete(key);
    out.push({ type: 'left', port, family: g.family, group: g.address, why });
  }
}
