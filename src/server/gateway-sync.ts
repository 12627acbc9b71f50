/**
 * Keeps the running gateway in step with the store, whoever changes it (this process's API, the CLI in
 * another process, another gateway on a shared database).
 *
 * Each poll (every 200 ms by default):
 *   1. read the store's change feed from the last revision seen; for each changed member, install, update or
 *      remove it on every transport (its WireGuard peer, its OpenVPN sessions): a disabled, expired or
 *      removed member's sessions end at once, whatever protocol they use;
 *   2. when policies, groups, settings, or the membership of a group some policy names change, recompile the
 *      policy and hand each installed member its rules;
 *   3. cut off members whose expiry has passed.
 * Every few seconds it also reports each member's status and traffic to the store (status.ts readers: the
 * CLI, the API, the console), summed over the transports it is connected with.
 *
 * The log gets one line per member event, naming the member and never its traffic (no addresses or ports of
 * its flows): connected (the first completed handshake after being offline), disconnected (no handshake for
 * a session's lifetime, REJECT_AFTER_TIME, or its session ended), disabled, enabled, expired, removed; and
 * policy drops summed per member, at most one line a minute each (DROP_LOG_INTERVAL_MS).
 */
import type { PublicKey } from '../crypto/keys.js';
import type { ControlPlane } from '../control/control-plane.js';
import type {
  ConnectionProtocol,
  MemberRecord,
  MemberStatus,
  Settings,
  TrafficSample,
} from '../control/model.js';
import { changedGateway } from '../control/model.js';
import { compilePolicy, type CompiledPolicy, type MemberAddresses } from '../control/policy.js';
import { MemberFirewall, type FirewallMember } from '../gateway/member-firewall.js';
import type { IpHeader } from '../net/ip-packet.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import { REJECT_AFTER_TIME } from '../wireguard/constants.js';
import type { Device } from '../wireguard/device.js';
import type {
  InstalledMember,
  MemberTransport,
  TransportStatus,
  UninstallReason,
} from '../gateway/member-transport.js';
import { WireGuardMembers } from './wireguard-members.js';

/** A member's policy drops are logged as one line with their count, at most this often. */
export const DROP_LOG_INTERVAL_MS = 60_000;

type Installed = InstalledMember;

interface Reported {
  /** Sums over the transports of the bytes each reported (each transport's own figures are in `by`). */
  rx: number;
  tx: number;
  /** Per transport, its figures as last reported: traffic samples are the differences. */
  readonly by: Map<MemberTransport, { rx: number; tx: number }>;
  online: boolean;
  /** While online: the protocol of the session shown, and since when (ms since the epoch). */
  protocol: ConnectionProtocol | null;
  since: number;
  endpoint: string | null;
  lastHandshake: number;
  drops: number;
}

/** Per member, for /metrics: what the gateway saw since it started. */
export interface MemberMetrics {
  readonly name: string;
  readonly online: boolean;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Completed handshakes seen (a new handshake time between two reports counts one). */
  readonly handshakes: number;
  readonly policyDrops: number;
}

export interface SyncEvents {
  /** Settings that need work outside the device changed (listen port, NAT). */
  settingsChanged?: (previous: Settings, next: Settings) => void;
  log?: (line: string) => void;
  /** Starts a handshake with a member the gateway knows an endpoint for (a member enabled again). */
  handshake?: (key: PublicKey) => void;
  /**
   * The store is shared with other gateways (PostgreSQL): status rows are written only for members this
   * gateway has seen (a handshake or traffic), so a gateway a member never dialled does not overwrite the
   * status reported by the one it is connected to.
   */
  sharedStore?: boolean;
  /** On a shared store: this gateway's registered name, written into each status row it reports (the mesh). */
  gatewayName?: string;
  /**
   * What the feed said changed that the mesh follows: gateway registrations, shared routes, sites; `all` when
   * the sync rebuilt from the whole store (its first poll, or a feed pruned past it).
   */
  meshChanged?: (changed: MeshChanges) => void;
}

/** What the mesh reads again (see SyncEvents.meshChanged). */
export interface MeshChanges {
  readonly gateways: boolean;
  readonly routes: boolean;
  readonly all: boolean;
}

/** Nothing of the member was ever seen by this gateway. */
function unseen(r: { online: boolean; lastHandshake: number; rx: number; tx: number }): boolean {
  return !r.online && r.lastHandshake === 0 && r.rx === 0 && r.tx === 0;
}

function prefixes(texts: readonly (string | null)[]): Prefix[] {
  const out: Prefix[] = [];
  for (const t of texts) {
    if (t === null) continue;
    const r = parsePrefix(t);
    if (r.ok) out.push(r.value);
  }
  return out;
}

const FULL_RECONCILE = Symbol('full');

function addressesOf(m: MemberRecord): MemberAddresses {
  return { addresses: m.ip6 ? [m.ip, m.ip6] : [m.ip], groups: m.groups };
}

interface SiteFirewall extends FirewallMember {
  readonly groups: readonly string[];
  readonly remoteSubnets: readonly string[];
}

export class GatewaySync {
  readonly counters = { polls: 0, changes: 0, installs: 0, removals: 0, fullReconciles: 0, expiries: 0 };
  private revision = -1;
  /** When a poll last brought the gateway to the head of the change feed (ms since the epoch; 0: never). */
  private caughtUpAt = 0;
  private settings: Settings;
  private policy: CompiledPolicy;
  private readonly firewall: MemberFirewall;
  private readonly installed = new Map<string, Installed>();
  /** WireGuard, always; other protocols attach themselves (attach()). */
  private readonly wireguard: WireGuardMembers;
  private readonly transports: MemberTransport[] = [];
  /** Every member's addresses and groups (installed or not): what group destinations are made of. */
  private readonly known = new Map<string, MemberAddresses>();
  private readonly reported = new Map<string, Reported>();
  /** Bytes of members uninstalled since the last report, not yet in the traffic history. */
  private unreported: { name: string; rx: number; tx: number }[] = [];

  /** Bytes moved since this gateway started, over every member, including members since removed. */
  private readonly moved = { rx: 0, tx: 0 };
  /** Handshakes seen per member name, since start (for /metrics). */
  private readonly handshakes = new Map<string, number>();
  /** Per member: drops already logged, and when the last drop line was written. */
  private readonly dropLog = new Map<string, { logged: number; at: number }>();
  /** Members whose last stored record was disabled: their next install is logged as "enabled". */
  private readonly disabledNames = new Set<string>();
  /** IPsec sites: their groups' rules decide what they send, and their subnets are flow destinations. */
  private readonly sites = new Map<string, SiteFirewall>();
  /** This gateway's registered name in its status rows (set later when the gateway joins while running). */
  private gatewayName: string | undefined;
  /** Every installed member's row is written at the next report (the name in the rows changed). */
  private reportAll = false;

  constructor(
    private readonly cp: ControlPlane,
    device: Device,
    private readonly events: SyncEvents = {},
  ) {
    this.settings = cp.settings();
    this.gatewayName = events.gatewayName;
    this.firewall = new MemberFirewall(this.firewallOptions());
    this.policy = this.compile();
    this.wireguard = new WireGuardMembers(
      device,
      this.admitMember,
      (line) => this.events.log?.(line),
      events.handshake,
    );
    this.transports.push(this.wireguard);
  }

  /**
   * Adds another protocol's sessions: from now on every installed member is installed there too, and its
   * status there counts toward the member's.
   */
  attach(transport: MemberTransport): void {
    if (this.transports.includes(transport)) return;
    this.transports.push(transport);
    for (const m of this.installed.values()) transport.install(m, undefined);
  }

  /** The firewall's check of a packet an installed member sent, whichever transport carried it. */
  readonly admitMember = (member: InstalledMember, packet: Uint8Array, header: IpHeader): boolean =>
    this.installed.get(member.name) === member && this.firewall.admit(member, packet, header, Date.now());

  /**
   * Whether an installed member's rules let a packet through as if addressed to `destination` (multicast:
   * each receiver of a group is checked as the destination of what the member sent).
   */
  readonly permits = (
    member: InstalledMember,
    packet: Uint8Array,
    header: IpHeader,
    destination: Uint8Array,
  ): boolean =>
    this.installed.get(member.name) === member && this.firewall.permits(member, packet, header, destination);

  private firewallOptions(): { defaultAllow: boolean; gateway: Prefix[]; members: Prefix[] } {
    const gw = this.cp.gatewayAddresses();
    const siteNets = [...this.sites.values()].flatMap((site) => site.remoteSubnets);
    return {
      defaultAllow: this.settings.defaultPolicy === 'allow',
      gateway: prefixes([gw.ip, gw.ip6]),
      members: prefixes([this.settings.subnet, this.settings.subnet6, ...siteNets]),
    };
  }

  /**
   * The IPsec sites the gateway serves. A site's traffic is checked like a member's: the rules of its groups
   * decide, and replies to flows a member (or another site) opened toward it pass.
   */
  setSites(
    sites: readonly { name: string; groups: readonly string[]; remoteSubnets: readonly string[] }[],
  ): void {
    this.sites.clear();
    for (const site of sites)
      this.sites.set(site.name, {
        name: site.name,
        groups: [...site.groups],
        remoteSubnets: [...site.remoteSubnets],
        rules: this.policy.rulesFor(site.groups),
        receiveRules: this.policy.receiveRulesFor(site.groups),
        drops: 0,
      });
    this.firewall.configure(this.firewallOptions());
  }

  /** The firewall's check of a packet that arrived from an IPsec site (false for an unknown site). */
  readonly admitSite = (name: string, packet: Uint8Array, header: IpHeader): boolean => {
    const site = this.sites.get(name);
    return site !== undefined && this.firewall.admit(site, packet, header, Date.now());
  };

  /**
   * Whether a site's rules let a packet through as if addressed to `destination` (multicast: each receiver of
   * a group the site sent to is checked as the destination).
   */
  readonly permitsSite = (
    name: string,
    packet: Uint8Array,
    header: IpHeader,
    destination: Uint8Array,
  ): boolean => {
    const site = this.sites.get(name);
    return site !== undefined && this.firewall.permits(site, packet, header, destination);
  };

  /** Whether an installed member's receive rules let it have a copy of this packet to a multicast group. */
  readonly receives = (member: InstalledMember, packet: Uint8Array, header: IpHeader): boolean =>
    this.installed.get(member.name) === member && this.firewall.receives(member, packet, header);

  /** Whether a site's receive rules let it have a copy of this packet to a multicast group. */
  readonly siteReceives = (name: string, packet: Uint8Array, header: IpHeader): boolean => {
    const site = this.sites.get(name);
    return site !== undefined && this.firewall.receives(site, packet, header);
  };

  get memberCount(): number {
    return this.installed.size;
  }

  get firewallCounters(): MemberFirewall['counters'] {
    return this.firewall.counters;
  }

  /** The WireGuard data plane's check for each decrypted packet (WireGuardInterface `admit`). */
  readonly admit = (packet: Uint8Array, header: IpHeader, peer: PublicKey): boolean =>
    this.wireguard.admit(packet, header, peer);

  private compile(): CompiledPolicy {
    const store = this.cp.store;
    const s = this.settings;
    const policies = store.listPolicies();
    // One pass over the known members gives every group's addresses.
    const byGroup = new Map<string, string[]>();
    for (const m of this.known.values())
      for (const g of m.groups) {
        let list = byGroup.get(g);
        if (!list) byGroup.set(g, (list = []));
        list.push(...m.addresses);
      }
    const policy = compilePolicy(s.defaultPolicy, policies, (group) => byGroup.get(group) ?? []);
    this.firewall.configure(this.firewallOptions());
    return policy;
  }

  private recompile(): void {
    this.policy = this.compile();
    for (const m of this.installed.values()) {
      m.rules = this.policy.rulesFor(m.record.groups);
      m.receiveRules = this.policy.receiveRulesFor(m.record.groups);
    }
    for (const site of this.sites.values()) {
      site.rules = this.policy.rulesFor(site.groups);
      site.receiveRules = this.policy.receiveRulesFor(site.groups);
    }
  }

  /** Reads the store and makes the device match it; call often (it is cheap when nothing changed). */
  poll(now: number = Date.now()): void {
    this.counters.polls++;
    const store = this.cp.store;
    const head = store.revision();
    if (head !== this.revision) {
      const changes = this.revision < 0 ? FULL_RECONCILE : store.changesSince(this.revision, 10_000);
      // A feed that skips revisions was pruned past us: rebuild from the whole store.
      if (changes === FULL_RECONCILE || changes.length === 0 || changes[0]!.rev !== this.revision + 1) {
        this.reconcileAll(now);
        this.events.meshChanged?.({ gateways: true, routes: true, all: true });
      } else {
        this.apply(changes, now);
      }
      this.revision = head;
    }
    this.caughtUpAt = now;
    this.expire(now);
    this.wireguard.settle();
  }

  private apply(changes: ReturnType<ControlPlane['store']['changesSince']>, now: number): void {
    let recompile = false;
    let gateways = false;
    let routes = false;
    const members = new Set<string>();
    for (const c of changes) {
      this.counters.changes++;
      if (c.kind === 'member') members.add(c.key);
      else if (changedGateway(c) !== undefined) gateways = true;
      else if (c.kind === 'settings') {
        const previous = this.settings;
        this.settings = this.cp.settings();
        this.events.settingsChanged?.(previous, this.settings);
        recompile = true;
      } else {
        if (c.kind === 'route' || c.kind === 'site') routes = true;
        recompile = true;
      }
    }
    if (gateways || routes) this.events.meshChanged?.({ gateways, routes, all: false });
    for (const name of members) {
      const before = this.known.get(name);
      const record = this.cp.store.getMember(name);
      const after = record ? addressesOf(record) : undefined;
      if (after) this.known.set(name, after);
      else this.known.delete(name);
      // A member joining or leaving a group some rule points at moves its addresses in that rule alone.
      if (!recompile && (before !== undefined || after !== undefined))
        this.policy.memberChanged(before, after);
      this.reconcileMember(name, record, now);
    }
    if (recompile) this.recompile();
  }

  private reconcileAll(now: number): void {
    this.counters.fullReconciles++;
    this.settings = this.cp.settings();
    const members = this.cp.store.allMembers();
    this.known.clear();
    for (const m of members) this.known.set(m.name, addressesOf(m));
    this.policy = this.compile();
    const seen = new Set<string>();
    for (const m of members) {
      seen.add(m.name);
      this.reconcileMember(m.name, m, now);
    }
    for (const name of [...this.installed.keys()]) if (!seen.has(name)) this.uninstall(name, 'removed');
  }

  private reconcileMember(name: string, record: MemberRecord | undefined, now: number): void {
    const current = this.installed.get(name);
    const wanted = record !== undefined && this.cp.isActive(record, new Date(now));
    const wasDisabled = this.disabledNames.has(name);
    if (record?.disabled) this.disabledNames.add(name);
    else this.disabledNames.delete(name);
    if (!wanted) {
      if (current) {
        const why = record === undefined ? 'removed' : record.disabled ? 'disabled' : 'expired';
        this.events.log?.(`member ${name} ${why}${this.endsSession(current)}`);
        this.uninstall(name, why);
      }
      if (record === undefined) this.forget(name);
      return;
    }
    if (!current && wasDisabled) this.events.log?.(`member ${name} enabled`);
    const previous = current;
    const entry: Installed = {
      name,
      // The gateway needs no member's private key: not keeping 10,000 of them is safer and smaller.
      record: record.privateKey === null ? record : { ...record, privateKey: null },
      expiresAt: record.expiresAt === null ? null : Date.parse(record.expiresAt),
      rules: this.policy.rulesFor(record.groups),
      receiveRules: this.policy.receiveRulesFor(record.groups),
      drops: previous?.drops ?? 0,
    };
    if (!previous) this.counters.installs++;
    this.installed.set(name, entry);
    for (const t of this.transports) t.install(entry, previous);
  }

  private uninstall(name: string, reason: UninstallReason): void {
    const m = this.installed.get(name);
    if (!m) return;
    this.installed.delete(name);
    const stored = reason === 'removed' ? undefined : this.cp.store.getMember(name);
    const last = this.reported.get(name);
    for (const t of this.transports) {
      const status = t.uninstall(m, reason, stored);
      if (!status) continue;
      // The bytes it moved since the last report would go with its sessions: keep them for the next report.
      const before = last?.by.get(t);
      const drx = before && status.rxBytes >= before.rx ? status.rxBytes - before.rx : status.rxBytes;
      const dtx = before && status.txBytes >= before.tx ? status.txBytes - before.tx : status.txBytes;
      if (drx > 0 || dtx > 0) this.unreported.push({ name, rx: drx, tx: dtx });
      if (last) {
        last.rx += drx;
        last.tx += dtx;
        // A transport counts a member installed again from zero.
        last.by.delete(t);
      }
    }
    this.counters.removals++;
  }

  /** ", its session ended" when the member was online as of the last report (the line says so once). */
  private endsSession(m: Installed): string {
    const last = this.reported.get(m.name);
    if (!last?.online) return '';
    last.online = false;
    return '; its session ended (disconnected)';
  }

  private forget(name: string): void {
    this.handshakes.delete(name);
    this.dropLog.delete(name);
  }

  private expire(now: number): void {
    for (const m of this.installed.values()) {
      if (m.expiresAt !== null && m.expiresAt <= now) {
        this.events.log?.(`member ${m.name} expired${this.endsSession(m)}`);
        this.uninstall(m.name, 'expired');
        this.counters.expiries++;
      }
    }
    this.firewall.expire(now);
  }

  /**
   * Writes what changed since the last report: each member's status, and the bytes it moved into the
   * per-minute traffic buckets. Members no longer installed are reported offline once.
   */
  report(now: number = Date.now()): void {
    const store = this.cp.store;
    const statuses = this.transports.map((t) => ({ t, byName: t.statuses(now) }));
    const at = new Date(now).toISOString();
    const bucket = new Date(now - (now % 60_000)).toISOString();
    const rows: MemberStatus[] = [];
    const samples: TrafficSample[] = [];
    for (const u of this.unreported.splice(0, 10_000)) {
      this.moved.rx += u.rx;
      this.moved.tx += u.tx;
      if (store.getMember(u.name)) samples.push({ name: u.name, at: bucket, rxBytes: u.rx, txBytes: u.tx });
    }
    // Each member's Reported entry is updated in place (report runs every few seconds over every member: new
    // objects each time would all outlive the young generation and be garbage in the old one).
    for (const m of this.installed.values()) {
      const last = this.reported.get(m.name);
      /** Transports reporting the member now that had reported it before. */
      let matched = 0;
      let online = false;
      let endpoint: string | null = null;
      let endpointAt = -1;
      let shown: TransportStatus | undefined;
      let lastHandshake = 0;
      let drx = 0;
      let dtx = 0;
      for (const { t, byName } of statuses) {
        const s = byName.get(m.name);
        if (!s) continue;
        // A transport's figures for a member only go up while it stays installed; less means it started over.
        const before = last?.by.get(t);
        drx += before && s.rxBytes >= before.rx ? s.rxBytes - before.rx : s.rxBytes;
        dtx += before && s.txBytes >= before.tx ? s.txBytes - before.tx : s.txBytes;
        if (before) matched++;
        // The endpoint shown is the one of the session seen last (an online one before any offline one).
        const rank = (s.online ? 2 ** 52 : 0) + s.lastHandshake;
        if (s.endpoint !== null && rank > endpointAt) {
          endpoint = s.endpoint;
          endpointAt = rank;
          shown = s;
        }
        if (s.online) online = true;
        if (s.lastHandshake > lastHandshake) lastHandshake = s.lastHandshake;
      }
      const rx = (last?.rx ?? 0) + drx;
      const tx = (last?.tx ?? 0) + dtx;
      // The protocol of the session shown; since when: its own start, or when this sync first saw it online.
      const protocol = online && shown?.online ? shown.protocol : null;
      const own = shown?.since ?? 0;
      const since = protocol === null ? 0 : own > 0 ? own : last?.protocol === protocol ? last.since : now;
      if (online && !last?.online) this.events.log?.(`member ${m.name} connected`);
      else if (!online && last?.online)
        this.events.log?.(`member ${m.name} disconnected (no handshake for ${REJECT_AFTER_TIME / 1000} s)`);
      if (lastHandshake > 0 && lastHandshake !== (last?.lastHandshake ?? 0))
        this.handshakes.set(m.name, (this.handshakes.get(m.name) ?? 0) + 1);
      this.logDrops(m, now);
      if (drx > 0 || dtx > 0) samples.push({ name: m.name, at: bucket, rxBytes: drx, txBytes: dtx });
      this.moved.rx += drx;
      this.moved.tx += dtx;
      if (this.events.sharedStore === true && unseen({ online, lastHandshake, rx, tx })) {
        // Another gateway's report of this member stands.
      } else if (
        !last ||
        this.reportAll ||
        last.rx !== rx ||
        last.tx !== tx ||
        last.online !== online ||
        last.protocol !== protocol ||
        last.since !== since ||
        last.endpoint !== endpoint ||
        last.lastHandshake !== lastHandshake ||
        last.drops !== m.drops
      ) {
        rows.push({
          name: m.name,
          online,
          protocol,
          since: protocol !== null ? new Date(since).toISOString() : null,
          endpoint,
          lastHandshake: lastHandshake > 0 ? new Date(lastHandshake).toISOString() : null,
          rxBytes: rx,
          txBytes: tx,
          policyDrops: m.drops,
          updatedAt: at,
          ...this.reporter(),
        });
      }
      const entry: Reported = last ?? {
        rx,
        tx,
        by: new Map(),
        online,
        protocol,
        since,
        endpoint,
        lastHandshake,
        drops: m.drops,
      };
      entry.rx = rx;
      entry.tx = tx;
      entry.online = online;
      entry.protocol = protocol;
      entry.since = since;
      entry.endpoint = endpoint;
      entry.lastHandshake = lastHandshake;
      entry.drops = m.drops;
      // Each transport's figures as of now; a transport that no longer reports the member starts over.
      if (entry.by.size > matched)
        for (const t of entry.by.keys())
          if (!statuses.some((x) => x.t === t && x.byName.has(m.name))) entry.by.delete(t);
      for (const { t, byName } of statuses) {
        const s = byName.get(m.name);
        if (!s) continue;
        const figures = entry.by.get(t);
        if (figures) {
          figures.rx = s.rxBytes;
          figures.tx = s.txBytes;
        } else entry.by.set(t, { rx: s.rxBytes, tx: s.txBytes });
      }
      if (!last) this.reported.set(m.name, entry);
    }
    for (const [name, last] of this.reported) {
      if (this.installed.has(name)) continue;
      this.reported.delete(name);
      if (this.events.sharedStore === true && unseen(last)) continue;
      if (!store.getMember(name)) continue;
      rows.push({
        name,
        online: false,
        protocol: null,
        since: null,
        endpoint: last.endpoint,
        lastHandshake: last.lastHandshake > 0 ? new Date(last.lastHandshake).toISOString() : null,
        rxBytes: last.rx,
        txBytes: last.tx,
        policyDrops: last.drops,
        updatedAt: at,
        ...this.reporter(),
      });
    }
    if (rows.length === 0 && samples.length === 0) {
      this.reportAll = false;
      return;
    }
    store.transaction(() => {
      if (rows.length > 0) store.putStatuses(rows);
      if (samples.length > 0) store.addTraffic(samples);
    });
    this.reportAll = false;
  }

  private reporter(): { gateway?: string } {
    const name = this.gatewayName;
    return name === undefined ? {} : { gateway: name };
  }

  /**
   * Names this gateway in its status rows from now on (it joined while running); the next report writes every
   * installed member's row, so the members already connected here are located by the other gateways too.
   */
  setGatewayName(name: string): void {
    if (name === this.gatewayName) return;
    this.gatewayName = name;
    this.reportAll = true;
  }

  /**
   * The members with a live session on this gateway now, asked of the transports themselves rather than taken
   * from the last report (which is up to a report interval old: a member that just connected here, e.g. after a
   * failover takeover, must stop being routed to the gateway it left at once).
   */
  onlineNow(now: number = Date.now()): Set<string> {
    const out = new Set<string>();
    for (const t of this.transports) for (const [name, s] of t.statuses(now)) if (s.online) out.add(name);
    return out;
  }

  /**
   * Whether a member has a live session here that the last report did not show online. Its report is then due
   * at once rather than at the report's cadence, so that the other gateways' meshes route it here within a
   * second (a member that connected, or that a failover takeover brought here).
   */
  hasArrivals(now: number = Date.now()): boolean {
    for (const name of this.onlineNow(now)) if (this.reported.get(name)?.online !== true) return true;
    return false;
  }

  /**
   * A packet from another gateway's member, delivered here through the mesh (its policy was checked where it
   * entered): its flow is recorded, so the replies of the member here pass this gateway's firewall.
   */
  readonly admitMesh = (packet: Uint8Array, header: IpHeader): void =>
    this.firewall.remember(packet, header, Date.now());

  /** One line per member and minute at most, with the count of packets its policy dropped since the last. */
  private logDrops(m: Installed, now: number): void {
    const entry = this.dropLog.get(m.name);
    if (!entry) {
      // Drops counted before this member was first seen here are not news (a reinstall keeps its count).
      this.dropLog.set(m.name, { logged: m.drops, at: now });
      return;
    }
    if (m.drops < entry.logged) entry.logged = m.drops;
    const count = m.drops - entry.logged;
    if (count === 0 || now - entry.at < DROP_LOG_INTERVAL_MS) return;
    const seconds = Math.round((now - entry.at) / 1000);
    this.events.log?.(`member ${m.name}: ${count} packet(s) dropped by policy in the last ${seconds} s`);
    entry.logged = m.drops;
    entry.at = now;
  }

  /** Per-member figures for /metrics (as of the last report; bytes since this gateway installed the member). */
  memberMetrics(): MemberMetrics[] {
    const out: MemberMetrics[] = [];
    for (const m of this.installed.values()) {
      const r = this.reported.get(m.name);
      out.push({
        name: m.name,
        online: r?.online ?? false,
        rxBytes: r?.rx ?? 0,
        txBytes: r?.tx ?? 0,
        handshakes: this.handshakes.get(m.name) ?? 0,
        policyDrops: m.drops,
      });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Where the gateway is in the change feed: the revision applied, and how many seconds ago a poll last
   * reached the head of the feed (about the poll interval while the store answers; growing while it does not).
   */
  feedPosition(now: number = Date.now()): { revision: number; lagSeconds: number } {
    return {
      revision: Math.max(0, this.revision),
      lagSeconds: this.caughtUpAt === 0 ? NaN : Math.max(0, now - this.caughtUpAt) / 1000,
    };
  }

  /** Live figures for the API's status endpoint (as of the last report). */
  summary(): { membersOnline: number; rxBytes: number; txBytes: number } {
    let membersOnline = 0;
    for (const r of this.reported.values()) if (r.online) membersOnline++;
    return { membersOnline, rxBytes: this.moved.rx, txBytes: this.moved.tx };
  }
}
