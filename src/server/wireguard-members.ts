/**
 * The people VPN's members as WireGuard peers: each installed member is a peer of the gateway's device whose
 * allowed IPs are the member's addresses. Maps the peer a decrypted packet came from back to its member for
 * the firewall, remembers where a disabled member was last seen (so enabling it again reaches out at once
 * instead of waiting for the client's 15 s retry), and reports each member's handshake and bytes.
 */
import { PublicKey } from '../crypto/keys.js';
import type { MemberRecord } from '../control/model.js';
import type { IpHeader } from '../net/ip-packet.js';
import { formatEndpoint, type Endpoint } from '../net/endpoint.js';
import { REJECT_AFTER_TIME } from '../wireguard/constants.js';
import type { Device } from '../wireguard/device.js';
import {
  hostPrefixes,
  type AdmitMember,
  type InstalledMember,
  type MemberTransport,
  type TransportStatus,
  type UninstallReason,
} from '../gateway/member-transport.js';

/** What `statuses` hands out for a peer: one object per peer, refreshed in place at each call. */
interface LiveStatus {
  online: boolean;
  readonly protocol: 'wireguard';
  readonly since: 0;
  endpoint: string | null;
  lastHandshake: number;
  rxBytes: number;
  txBytes: number;
}

interface Peer {
  member: InstalledMember;
  readonly key: PublicKey;
  readonly keyText: string;
  /** Bytes of earlier peers of this member (before a key rotation), so the member's counters never go down. */
  baseRx: number;
  baseTx: number;
  readonly status: LiveStatus;
  /** The endpoint `status.endpoint` was formatted from (formatted again only when the device's changes). */
  endpointSeen: Endpoint | undefined;
}

/** At most this many endpoints of disabled or expired members are remembered. */
const MAX_REMEMBERED_ENDPOINTS = 65536;

export class WireGuardMembers implements MemberTransport {
  readonly protocol = 'wireguard';
  private readonly byName = new Map<string, Peer>();
  private readonly byKey = new Map<string, Peer>();
  /**
   * By the PublicKey object given to the device (which hands the same object back in forEachPeerActivity):
   * `statuses`, called every second on a gateway in a mesh, then needs no base64 per peer.
   */
  private readonly byDeviceKey = new Map<PublicKey, Peer>();
  /** The device hands back the PublicKey objects it holds; resolving each once keeps base64 off the path. */
  private byKeyObject = new WeakMap<PublicKey, Peer | null>();
  private peersChanged = false;
  /** Where a member was last seen, kept while it is disabled or expired (by public key). */
  private readonly lastEndpoints = new Map<string, Endpoint>();

  constructor(
    private readonly device: Device,
    private readonly admitMember: AdmitMember,
    private readonly log: (line: string) => void = () => {},
    /** Starts a handshake with a member the gateway knows an endpoint for (a member enabled again). */
    private readonly handshake?: (key: PublicKey) => void,
  ) {}

  /** The data plane's check for each decrypted packet (WireGuardInterface `admit`). */
  readonly admit = (packet: Uint8Array, header: IpHeader, key: PublicKey): boolean => {
    let peer = this.byKeyObject.get(key);
    if (peer === undefined) {
      peer = this.byKey.get(key.toBase64()) ?? null;
      this.byKeyObject.set(key, peer);
    }
    if (peer === null) return false; // a peer added behind the control plane's back gets nowhere
    return this.admitMember(peer.member, packet, header);
  };

  /** Called once per poll, after its installs and uninstalls: resolved key objects are dropped once. */
  settle(): void {
    if (!this.peersChanged) return;
    this.byKeyObject = new WeakMap();
    this.peersChanged = false;
  }

  install(member: InstalledMember, previous: InstalledMember | undefined): void {
    const record = member.record;
    let peer = this.byName.get(member.name);
    let baseRx = 0;
    let baseTx = 0;
    if (peer && peer.keyText !== record.publicKey) {
      // A rotated key: the old peer's sessions end; its bytes stay the member's.
      const status = this.device.peerStatus(peer.key, 0);
      baseRx = peer.baseRx + (status?.rxBytes ?? 0);
      baseTx = peer.baseTx + (status?.txBytes ?? 0);
      this.removePeer(peer);
      peer = undefined;
    }
    if (peer) {
      peer.member = member;
      if (previous && previous.record.ip === record.ip && previous.record.ip6 === record.ip6) return;
      this.device.setPeer({ publicKey: peer.key, allowedIps: hostPrefixes(record), replaceAllowedIps: true });
      return;
    }
    const parsed = PublicKey.parse(record.publicKey);
    if (!parsed.ok) {
      this.log(`member ${member.name}: stored public key is invalid; not installed`);
      return;
    }
    const endpoint = previous ? undefined : this.lastEndpoints.get(record.publicKey);
    this.device.setPeer({
      publicKey: parsed.key,
      allowedIps: hostPrefixes(record),
      replaceAllowedIps: true,
      ...(endpoint ? { endpoint } : {}),
    });
    peer = {
      member,
      key: parsed.key,
      keyText: record.publicKey,
      baseRx,
      baseTx,
      status: {
        online: false,
        protocol: 'wireguard',
        since: 0,
        endpoint: null,
        lastHandshake: 0,
        rxBytes: baseRx,
        txBytes: baseTx,
      },
      endpointSeen: undefined,
    };
    this.byName.set(member.name, peer);
    this.byKey.set(record.publicKey, peer);
    this.byDeviceKey.set(parsed.key, peer);
    this.peersChanged = true;
    // An enabled-again member's client waits up to 15 s before it retries (paper §6.4); reaching out from
    // here restores its tunnel at once.
    if (endpoint) {
      this.lastEndpoints.delete(record.publicKey);
      this.handshake?.(parsed.key);
    }
  }

  uninstall(
    member: InstalledMember,
    reason: UninstallReason,
    stored: MemberRecord | undefined,
  ): TransportStatus | undefined {
    const peer = this.byName.get(member.name);
    if (!peer) return undefined;
    const status = this.device.peerStatus(peer.key, 0);
    if (status?.endpoint && reason !== 'removed' && stored?.publicKey === peer.keyText) {
      if (this.lastEndpoints.size >= MAX_REMEMBERED_ENDPOINTS) this.lastEndpoints.clear();
      this.lastEndpoints.set(peer.keyText, status.endpoint);
    }
    this.removePeer(peer);
    return {
      online: false,
      protocol: 'wireguard',
      since: 0,
      endpoint: status?.endpoint ? formatEndpoint(status.endpoint) : null,
      lastHandshake: status?.lastHandshake ?? 0,
      rxBytes: peer.baseRx + (status?.rxBytes ?? 0),
      txBytes: peer.baseTx + (status?.txBytes ?? 0),
    };
  }

  private removePeer(peer: Peer): void {
    this.device.removePeer(peer.key);
    this.byName.delete(peer.member.name);
    this.byKey.delete(peer.keyText);
    this.byDeviceKey.delete(peer.key);
    this.peersChanged = true;
  }

  /**
   * Each peer's status object is refreshed in place, not made anew (a gateway in a mesh asks every second,
   * for every member): the map's values are valid until the next call.
   */
  statuses(now: number): Map<string, TransportStatus> {
    const out = new Map<string, TransportStatus>();
    this.device.forEachPeerActivity((key, endpoint, lastHandshake, rxBytes, txBytes) => {
      const peer = this.byDeviceKey.get(key) ?? this.byKey.get(key.toBase64());
      if (!peer) return;
      const s = peer.status;
      s.online = lastHandshake > 0 && now - lastHandshake < REJECT_AFTER_TIME;
      // A WireGuard session has no start of its own (handshakes renew it): GatewaySync notes when it came up.
      if (endpoint !== peer.endpointSeen) {
        peer.endpointSeen = endpoint;
        s.endpoint = endpoint ? formatEndpoint(endpoint) : null;
      }
      s.lastHandshake = lastHandshake;
      s.rxBytes = peer.baseRx + rxBytes;
      s.txBytes = peer.baseTx + txBytes;
      out.set(peer.member.name, s);
    });
    return out;
  }
}
