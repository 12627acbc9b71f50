/**
 * One protocol's view of the people VPN's members. A member's address, groups, policy, expiry and
 * enable/disable belong to the member, not to a protocol: GatewaySync decides which members may connect and
 * with which rules, and tells every transport (WireGuard peers, OpenVPN sessions) through this
 * interface. Each transport reports its sessions back by member name, so status, traffic and metrics are the
 * member's whatever it connected with.
 */
import type { ConnectionProtocol, MemberRecord } from '../control/model.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import type { FirewallMember } from './member-firewall.js';
import type { IpHeader } from '../net/ip-packet.js';

/** The member's own addresses as host prefixes (/32, and /128 when it has an IPv6 address). */
export function hostPrefixes(record: MemberRecord): Prefix[] {
  const out: Prefix[] = [];
  for (const text of [`${record.ip}/32`, record.ip6 ? `${record.ip6}/128` : null]) {
    if (text === null) continue;
    const p = parsePrefix(text);
    if (p.ok) out.push(p.value);
  }
  return out;
}

/** A member the gateway currently lets in, with its compiled rules (the firewall's handle for it). */
export interface InstalledMember extends FirewallMember {
  readonly record: MemberRecord;
  /** Milliseconds since the epoch, or null for a member that never expires. */
  readonly expiresAt: number | null;
}

/** Why a member's sessions end: what the member's own log line says. */
export type UninstallReason = 'removed' | 'disabled' | 'expired';

/** A member's sessions on one transport. */
export interface TransportStatus {
  readonly online: boolean;
  /** The protocol of the member's session on this transport. */
  readonly protocol: ConnectionProtocol;
  /** When that session was established (ms since the epoch), if the transport knows; else 0. */
  readonly since: number;
  /** Where the member is connected from ("192.0.2.7:40000", "[2001:db8::7]:1194"), if known. */
  readonly endpoint: string | null;
  /** When the last session was established or confirmed (WireGuard: the last handshake), 0 if never. */
  readonly lastHandshake: number;
  /** Bytes received from and sent to the member since this transport installed it (never go down). */
  readonly rxBytes: number;
  readonly txBytes: number;
}

/** Checks a packet a member sent (its rules, the flow table, the drop count). */
export type AdmitMember = (member: InstalledMember, packet: Uint8Array, header: IpHeader) => boolean;

export interface MemberTransport {
  /** A short protocol name for logs and status ("wireguard", "openvpn"). */
  readonly protocol: string;
  /**
   * The member may connect, or its record changed (`previous` is the entry it replaces, with the same name).
   * The transport keeps `member` as its handle for this member's packets until the next install or uninstall.
   */
  install(member: InstalledMember, previous: InstalledMember | undefined): void;
  /**
   * The member may no longer connect: its sessions end now. `stored` is its record in the store at this
   * moment (undefined when it was removed). Returns its final status on this transport, if it had sessions.
   */
  uninstall(
    member: InstalledMember,
    reason: UninstallReason,
    stored: MemberRecord | undefined,
  ): TransportStatus | undefined;
  /** The live status of every installed member this transport has seen, by member name. */
  statuses(now: number): Map<string, TransportStatus>;
}
