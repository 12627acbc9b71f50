/**
 * The people VPN's members as multicast ports: each installed member with a WireGuard key is a receiver
 * port of the replicator ("wg:NAME"), reached by sending to exactly its peer, whatever the group address;
 * each OpenVPN session carrying a member's data is one too ("ovpn:NAME"), reached through that session.
 * Policy is the member firewall's:
 *   - sending: the sender's rules with the group as destination, exactly as for unicast (drops are counted
 *     against the member as policy drops);
 *   - receiving: the sender's rules with the receiver's tunnel address as destination, i.e. a member gets a
 *     copy only if the sender could reach it by unicast with the same protocol and port.
 * The host (the gateway's own TUN side) is a port too; it sends and receives under no member's rules.
 */
import { PublicKey } from '../crypto/keys.js';
import type { MemberRecord } from '../control/model.js';
import type { GroupTap, WireGuardInterface } from '../gateway/wireguard-interface.js';
import type { OpenVpnSession, SessionGroupTap } from '../gateway/openvpn-interface.js';
import type { MulticastPolicy, MulticastPort, Replicator } from '../gateway/multicast.js';
import type { IpHeader } from '../net/ip-packet.js';
import { parseAddress } from '../net/ip.js';
import type { Family } from '../multicast/messages.js';
import type {
  AdmitMember,
  InstalledMember,
  MemberTransport,
  TransportStatus,
} from '../gateway/member-transport.js';

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

export class MulticastMembers implements MemberTransport, GroupTap, SessionGroupTap, MulticastPolicy {
  readonly protocol = 'multicast';
  readonly counters = { unknownPeer: 0 };
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
  ) {}

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
  }

  down(session: OpenVpnSession): void {
    const port = this.bySession.get(session);
    if (port === undefined) return;
    this.bySession.delete(session);
    this.replicator.removePort(port);
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

  readonly maySend = (source: MulticastPort, packet: Uint8Array, header: IpHeader): boolean =>
    !(source instanceof MemberPortBase) || this.admitMember(source.member, packet, header);

  readonly mayReceive = (
    source: MulticastPort,
    receiver: MulticastPort,
    packet: Uint8Array,
    header: IpHeader,
  ): boolean => {
    if (!(source instanceof MemberPortBase) || !(receiver instanceof MemberPortBase)) return true;
    const destination = header.family === 4 ? receiver.address4 : receiver.address6;
    return destination !== null && this.permitsMember(source.member, packet, header, destination);
  };
}

function sameAddress(port: MemberPort, record: MemberRecord): boolean {
  const a4 = bytes(record.ip);
  const a6 = bytes(record.ip6);
  const eq = (x: Uint8Array | null, y: Uint8Array | null): boolean =>
    x === null || y === null ? x === y : x.length === y.length && x.every((b, i) => b === y[i]);
  return eq(a4, port.address4) && eq(a6, port.address6);
}
