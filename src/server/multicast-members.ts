/**
 * The people VPN's members as multicast ports: each installed member with a WireGuard key is a receiver
 * port of the replicator ("wg:NAME"), reached by sending to exactly its peer, whatever the group address;
 * each OpenVPN session carrying a member's data is one too ("ovpn:NAME"), reached through that session.
 * Policy is the member firewall's:
 *   - sending: the sender's rules with the group as destination, exactly as for unicast (drops are counted
 *     against the member as policy drops);
 *   - receiving: the receiver's own receive rules (policy direction "receive") must allow the group, deny by
 *     default; and the sender's rules with the receiver's tunnel address as destination, i.e. a member gets a
 *     copy only if the sender could reach it by unicast with the same protocol and port.
 * The host (the gateway's own TUN side) is a port too; it sends and receives under no member's rules.
 *
 * IPsec sites with multicast ranges are ports too ("site:NAME"), reached through the site's CHILD SA. A site's
 * rules are its groups' (as for its unicast traffic): it may send to a group its rules let it reach, and a
 * member gets its copy only if the site's rules would let the packet reach that member's address. A site
 * gets copies by static membership or its hosts' reports; what it gets is what the sender may send to the
 * group and what the receive rules of the site's groups allow. The LAN bridge and the host have no groups:
 * no receive rules apply to them.
 *
 * Static memberships (settings.multicastStatic: member:NAME, site:NAME, lan) are kept applied here as ports
 * come and go: a member's WireGuard peer and its OpenVPN session while one is up, a site while it is a
 * multicast port, the LAN bridge's port while there is one.
 */
import { PublicKey } from '../crypto/keys.js';
import type { MemberRecord } from '../control/model.js';
import { GATEWAY_LINK_LOCAL } from '../control/control-plane.js';
import type { GroupTap, WireGuardInterface } from '../gateway/wireguard-interface.js';
import type { OpenVpnSession, SessionGroupTap } from '../gateway/openvpn-interface.js';
import type { MulticastPolicy, MulticastPort, Replicator } from '../gateway/multicast.js';
import type { IpHeader } from '../net/ip-packet.js';
import { parseAddress } from '../net/ip.js';
import type { IpsecSite, SiteGroupTap } from '../gateway/ipsec-site.js';
import type { MulticastStaticMembership } from '../control/multicast-settings.js';
import type { Family } from '../multicast/messages.js';
import type {
  AdmitMember,
  InstalledMember,
  MemberTransport,
  TransportStatus,
} from '../gateway/member-transport.js';

/** The source of MLD queries to a site: the gateway's link-local address in every tunnel. */
const SITE_QUERY_SOURCE_6 = ((): Uint8Array => {
  const a = parseAddress(GATEWAY_LINK_LOCAL);
  if (!a.ok) throw new Error(`bad gateway link-local address ${GATEWAY_LINK_LOCAL}`);
  return a.value.bytes;
})();

/** The firewall's receive-side check (GatewaySync.permits). */
export type PermitsMember = (
  member: InstalledMember,
  packet: Uint8Array,
  header: IpHeader,
  destination: Uint8Array,
) => boolean;

/** A member's port, whatever carries it: policy speaks of the member and its addresses. */
abstract class MemberPortBase implements MulticastPort {
  abstract readonly id: string;
  readonly families: readonly Family[];
  constructor(
    public member: InstalledMember,
    readonly address4: Uint8Array | null,
    readonly address6: Uint8Array | null,
  ) {
    this.families = address6 === null ? [4] : [4, 6];
  }
  abstract send(packet: Uint8Array, header: IpHeader, now: number): void;
  abstract flush(): void;
}

class MemberPort extends MemberPortBase {
  readonly id: string;
  constructor(
    member: InstalledMember,
    readonly key: PublicKey,
    readonly keyText: string,
    address4: Uint8Array,
    address6: Uint8Array | null,
    private readonly wg: WireGuardInterface,
  ) {
    super(member, address4, address6);
    this.id = `wg:${member.name}`;
  }

  send(packet: Uint8Array, header: IpHeader, now: number): void {
    this.wg.sendTo(this.key, packet, header, now);
  }

  flush(): void {
    this.wg.flush();
  }
}

function bytes(text: string | null): Uint8Array | null {
  if (text === null) return null;
  const a = parseAddress(text);
  return a.ok ? a.value.bytes : null;
}

/** An OpenVPN session carrying a member's data: copies are sealed to exactly that session. */
class SessionPort extends MemberPortBase {
  readonly id: string;
  constructor(
    member: InstalledMember,
    readonly session: OpenVpnSession,
  ) {
    super(member, session.ip4 ?? null, session.ip6 ?? null);
    this.id = `ovpn:${member.name}`;
  }

  send(packet: Uint8Array, header: IpHeader, now: number): void {
    this.session.send(packet, now, header);
  }

  flush(): void {
    this.session.flush();
  }
}

/** The receive rules of a member and of a site (GatewaySync.receives, siteReceives). */
export interface ReceivePolicy {
  receives(member: InstalledMember, packet: Uint8Array, header: IpHeader): boolean;
  siteReceives(name: string, packet: Uint8Array, header: IpHeader): boolean;
}

/** The site checks of the firewall (GatewaySync.admitSite, permitsSite). */
export interface SitePolicy {
  admitSite(name: string, packet: Uint8Array, header: IpHeader): boolean;
  permitsSite(name: string, packet: Uint8Array, header: IpHeader, destination: Uint8Array): boolean;
}

/**
 * An IPsec site: copies are sealed into its current CHILD SA (looked up by name: it outlives config changes).
 * Queried over IPv4 when it has IPv4 group ranges, over IPv6 when it has IPv6 ones: its CHILD SA then carries
 * IGMP, or MLD with its link-local sources (site-selectors.ts), and the hosts that joined a group on the far
 * gateway's tunnel interface answer. MLD queries come from the gateway's fe80::1 even without an IPv6 member
 * subnet (a site's IPv6 groups need none).
 */
class SitePort implements MulticastPort {
  readonly id: string;
  readonly querySource6: Uint8Array | undefined;
  constructor(
    readonly name: string,
    private readonly tunnel: (name: string) => IpsecSite | undefined,
    readonly families: readonly Family[],
  ) {
    this.id = `site:${name}`;
    this.querySource6 = families.includes(6) ? SITE_QUERY_SOURCE_6 : undefined;
  }

  send(packet: Uint8Array, header: IpHeader, now: number): void {
    this.tunnel(this.name)?.send(packet, now, header);
  }

  flush(): void {
    this.tunnel(this.name)?.flush();
  }
}

interface AppliedStatic {
  readonly port: MulticastPort;
  readonly family: Family;
  readonly group: Uint8Array;
}

export class MulticastMembers
  implements MemberTransport, GroupTap, SessionGroupTap, SiteGroupTap, MulticastPolicy
{
  readonly protocol = 'multicast';
  readonly counters = { unknownPeer: 0, unknownSite: 0 };
  private readonly bySite = new Map<string, SitePort>();
  private lanPort: MulticastPort | undefined;
  private statics: readonly MulticastStaticMembership[] = [];
  /** "PORT-ID GROUP" → the membership as applied to the replicator. */
  private readonly applied = new Map<string, AppliedStatic>();
  private readonly byName = new Map<string, MemberPort>();
  private readonly byKey = new Map<string, MemberPort>();
  /** The device hands back the key objects it holds: resolving each once keeps base64 off the path. */
  private byKeyObject = new WeakMap<PublicKey, MemberPort | null>();
  private readonly bySession = new Map<OpenVpnSession, SessionPort>();

  constructor(
    private readonly replicator: Replicator,
    private readonly wg: WireGuardInterface,
    private readonly admitMember: AdmitMember,
    private readonly permitsMember: PermitsMember,
    private readonly clock: () => number,
    private readonly sites: SitePolicy = { admitSite: () => false, permitsSite: () => false },
    private readonly receiving: ReceivePolicy = { receives: () => true, siteReceives: () => true },
  ) {}

  // ------------------------------------------------------------ static memberships

  /** The static memberships to keep applied (settings.multicastStatic); applied at once where ports exist. */
  setStatic(list: readonly MulticastStaticMembership[]): void {
    this.statics = list;
    this.reconcileStatic();
  }

  /** The ports a static membership's port names, as they exist now. */
  private portsFor(name: string): MulticastPort[] {
    if (name === 'lan') return this.lanPort ? [this.lanPort] : [];
    if (name.startsWith('site:')) {
      const p = this.bySite.get(name.slice(5));
      return p ? [p] : [];
    }
    if (!name.startsWith('member:')) return [];
    const member = name.slice(7);
    const out: MulticastPort[] = [];
    const wg = this.byName.get(member);
    if (wg) out.push(wg);
    for (const p of this.bySession.values()) if (p.member.name === member) out.push(p);
    return out;
  }

  private reconcileStatic(): void {
    const wanted = new Map<string, AppliedStatic>();
    for (const e of this.statics) {
      const a = parseAddress(e.group);
      if (!a.ok) continue;
      for (const port of this.portsFor(e.port))
        wanted.set(`${port.id} ${e.group}`, { port, family: a.value.family, group: a.value.bytes });
    }
    for (const [key, x] of this.applied) {
      const w = wanted.get(key);
      if (w !== undefined && w.port === x.port) continue;
      // A port that went away lost its memberships with it; leaving again is a no-op then.
      this.replicator.setStatic(x.port, x.family, x.group, false);
      this.applied.delete(key);
    }
    for (const [key, w] of wanted) {
      if (this.applied.has(key)) continue;
      this.replicator.setStatic(w.port, w.family, w.group, true);
      this.applied.set(key, w);
    }
  }

  // ------------------------------------------------------------ IPsec sites and the LAN

  /**
   * The sites that are multicast ports now (enabled, with multicast ranges), each with the families it is
   * queried in; `tunnel` finds a site's tunnel.
   */
  setSites(
    sites: readonly { name: string; families: readonly Family[] }[],
    tunnel: (name: string) => IpsecSite | undefined,
  ): void {
    const wanted = new Map(sites.map((s) => [s.name, s.families]));
    for (const [name, port] of this.bySite) {
      const families = wanted.get(name);
      if (families === undefined || families.join() !== port.families.join()) {
        this.bySite.delete(name);
        this.replicator.removePort(port);
      }
    }
    for (const [name, families] of wanted)
      if (!this.bySite.has(name)) {
        const port = new SitePort(name, tunnel, families);
        this.bySite.set(name, port);
        this.replicator.addPort(port, this.clock());
      }
    this.reconcileStatic();
  }

  /** The site's port ("site:NAME"), if it is one. */
  sitePort(name: string): MulticastPort | undefined {
    return this.bySite.get(name);
  }

  /** SiteGroupTap: a packet to a group from a site. */
  fromSite(site: IpsecSite, packet: Uint8Array, header: IpHeader): void {
    const port = this.bySite.get(site.name);
    if (port === undefined) {
      this.counters.unknownSite++;
      return;
    }
    this.replicator.receive(packet, header, port, this.clock());
  }

  /** The LAN bridge's port (a static membership `lan` joins it), or none. */
  setLanPort(port: MulticastPort | undefined): void {
    if (this.lanPort === port) return;
    if (this.lanPort) this.replicator.removePort(this.lanPort);
    this.lanPort = port;
    if (port) this.replicator.addPort(port, this.clock());
    this.reconcileStatic();
  }

  // ------------------------------------------------------------ MemberTransport

  install(member: InstalledMember, _previous: InstalledMember | undefined): void {
    const record: MemberRecord = member.record;
    // Its OpenVPN session's port follows the member's new rules too.
    for (const p of this.bySession.values()) if (p.member.name === member.name) p.member = member;
    const current = this.byName.get(member.name);
    if (current && current.keyText === record.publicKey && sameAddress(current, record)) {
      current.member = member;
      return;
    }
    if (current) this.remove(current);
    const key = PublicKey.parse(record.publicKey);
    const address4 = bytes(record.ip);
    if (!key.ok || address4 === null) return;
    const port = new MemberPort(member, key.key, record.publicKey, address4, bytes(record.ip6), this.wg);
    this.byName.set(member.name, port);
    this.byKey.set(record.publicKey, port);
    this.byKeyObject = new WeakMap();
    this.replicator.addPort(port, this.clock());
    this.reconcileStatic();
  }

  uninstall(member: InstalledMember): TransportStatus | undefined {
    const port = this.byName.get(member.name);
    if (port) this.remove(port);
    return undefined;
  }

  statuses(): Map<string, TransportStatus> {
    return new Map();
  }

  private remove(port: MemberPort): void {
    this.byName.delete(port.member.name);
    this.byKey.delete(port.keyText);
    this.byKeyObject = new WeakMap();
    this.replicator.removePort(port);
    this.reconcileStatic();
  }

  /** The member's port ("wg:NAME"), if installed. */
  port(name: string): MulticastPort | undefined {
    return this.byName.get(name);
  }

  // ------------------------------------------------------------ GroupTap

  fromPeer(packet: Uint8Array, header: IpHeader, peer: PublicKey, now: number): void {
    let port = this.byKeyObject.get(peer);
    if (port === undefined) {
      port = this.byKey.get(peer.toBase64()) ?? null;
      this.byKeyObject.set(peer, port);
    }
    if (port === null) {
      this.counters.unknownPeer++;
      return;
    }
    this.replicator.receive(packet, header, port, now);
  }

  flush(): void {
    this.replicator.flush();
  }

  // ------------------------------------------------------------ SessionGroupTap (OpenVPN)

  up(session: OpenVpnSession): void {
    const member = session.member;
    if (member === undefined || this.bySession.has(session)) return;
    const port = new SessionPort(member, session);
    this.bySession.set(session, port);
    this.replicator.addPort(port, this.clock());
    this.reconcileStatic();
  }

  down(session: OpenVpnSession): void {
    const port = this.bySession.get(session);
    if (port === undefined) return;
    this.bySession.delete(session);
    this.replicator.removePort(port);
    this.reconcileStatic();
  }

  fromSession(session: OpenVpnSession, packet: Uint8Array, header: IpHeader, now: number): void {
    const port = this.bySession.get(session);
    if (port === undefined) {
      this.counters.unknownPeer++;
      return;
    }
    this.replicator.receive(packet, header, port, now);
  }

  // ------------------------------------------------------------ MulticastPolicy

  readonly maySend = (source: MulticastPort, packet: Uint8Array, header: IpHeader): boolean => {
    if (source instanceof MemberPortBase) return this.admitMember(source.member, packet, header);
    if (source instanceof SitePort) return this.sites.admitSite(source.name, packet, header);
    return true;
  };

  readonly mayReceive = (
    source: MulticastPort,
    receiver: MulticastPort,
    packet: Uint8Array,
    header: IpHeader,
  ): boolean => {
    if (receiver instanceof SitePort) return this.receiving.siteReceives(receiver.name, packet, header);
    if (!(receiver instanceof MemberPortBase)) return true;
    if (!this.receiving.receives(receiver.member, packet, header)) return false;
    const destination = header.family === 4 ? receiver.address4 : receiver.address6;
    if (source instanceof MemberPortBase)
      return destination !== null && this.permitsMember(source.member, packet, header, destination);
    if (source instanceof SitePort)
      return destination !== null && this.sites.permitsSite(source.name, packet, header, destination);
    return true;
  };
}

function sameAddress(port: MemberPort, record: MemberRecord): boolean {
  const a4 = bytes(record.ip);
  const a6 = bytes(record.ip6);
  const eq = (x: Uint8Array | null, y: Uint8Array | null): boolean =>
    x === null || y === null ? x === y : x.length === y.length && x.every((b, i) => b === y[i]);
  return eq(a4, port.address4) && eq(a6, port.address6);
}
