/**
 * The people VPN's domain model: what an operator configures (settings, groups, members, shared routes,
 * policies) and what the control plane records about it (audit entries, API tokens, member status).
 *
 * Every value here is plain data, already validated: addresses and prefixes in their canonical text form,
 * keys in base64, times as ISO 8601 strings. Parsing and validation live in validate.ts.
 */

import type { MulticastQuerierSettings, MulticastStaticMembership } from './multicast-settings.js';

export type PolicyAction = 'allow' | 'deny';
export type Proto = 'any' | 'tcp' | 'udp' | 'icmp';

export interface Settings {
  /** What members dial: host name or address, with the port. */
  readonly endpoint: string;
  readonly listenPort: number;
  /** The gateway's WireGuard interface (TUN device) name. */
  readonly interfaceName: string;
  /** The members' IPv4 subnet; the gateway takes its first host address. */
  readonly subnet: string;
  readonly subnet6: string | null;
  /** DNS servers written into member configs. */
  readonly dns: readonly string[];
  /** Interface whose address members egress from (source NAT); null leaves NAT off. */
  readonly natEgress: string | null;
  /** What a packet no policy matches gets. */
  readonly defaultPolicy: PolicyAction;
  /** Seconds; written into member configs (0 leaves it out). */
  readonly persistentKeepalive: number;
  readonly mtu: number;
  /** host:port of the REST API. */
  readonly apiListen: string;
  /**
   * OpenVPN: listeners, data ciphers, renegotiation and the member certificates' default lifetime. Absent in
   * settings written before OpenVPN existed; ControlPlane.settings() fills in OPENVPN_DEFAULTS then.
   */
  readonly openvpn?: OpenVpnSettings;
  /**
   * Multicast across the overlay (docs/multicast.md): the gateway replicates group traffic between members
   * and member configs route 224.0.0.0/4. Absent (settings written before it existed) or false: off.
   */
  readonly multicast?: boolean;
  /**
   * With multicast on: the LAN interface on which the gateway is an IGMP proxy (RFC 4605), bridging the
   * overlay's groups to that LAN. Absent: none.
   */
  readonly multicastLan?: string;
  /** The querier's timers (src/control/multicast-settings.ts). Absent: RFC 3376's defaults. */
  readonly multicastQuerier?: MulticastQuerierSettings;
  /** Ports joined to groups without reports (src/control/multicast-settings.ts). Absent: none. */
  readonly multicastStatic?: readonly MulticastStaticMembership[];
}

/** The data ciphers OpenVPN 2.5+ negotiates (NCP) that Weft offers. */
export const OPENVPN_CIPHERS = ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305'] as const;
export type OpenVpnCipher = (typeof OPENVPN_CIPHERS)[number];

export interface OpenVpnSettings {
  /** UDP port of the OpenVPN listener; null: no UDP listener. */
  readonly udpPort: number | null;
  /** TCP port of the OpenVPN listener (443 passes most firewalls); null: no TCP listener. */
  readonly tcpPort: number | null;
  /** Offered in this order (`data-ciphers` in profiles). */
  readonly dataCiphers: readonly OpenVpnCipher[];
  /** Seconds between data-channel key renegotiations (OpenVPN's reneg-sec); 0 turns it off. */
  readonly renegSec: number;
  /** Lifetime of a member certificate, in days, for members without an expiry. */
  readonly certificateDays: number;
}

export const OPENVPN_DEFAULTS: OpenVpnSettings = {
  udpPort: 1194,
  tcpPort: 443,
  dataCiphers: ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305'],
  renegSec: 3600,
  certificateDays: 825,
};

export interface Group {
  readonly name: string;
  readonly description: string;
}

export interface Member {
  readonly name: string;
  /** Fixed tunnel address inside `subnet`. */
  readonly ip: string;
  /** Fixed IPv6 tunnel address inside `subnet6`, when the network has one. */
  readonly ip6: string | null;
  readonly publicKey: string;
  /** Whether the store holds the member's private key (false when the member brought its own). */
  readonly hasPrivateKey: boolean;
  readonly groups: readonly string[];
  readonly disabled: boolean;
  /** ISO 8601; the member is cut off from this instant on. */
  readonly expiresAt: string | null;
  /** The member's config sends all its traffic through the gateway. */
  readonly fullTunnel: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** The stored form of a member, with its secret. Never leaves the control plane except in a member config. */
export interface MemberRecord extends Member {
  readonly privateKey: string | null;
}

/** A subnet behind the gateway that members may be given (e.g. a cloud VPC). */
export interface SharedRoute {
  readonly cidr: string;
  readonly description: string;
  /**
   * The gateway (its registered name) that serves it on a shared store: only its host routes the prefix; the
   * other gateways route it to that one over the mesh. Absent: every gateway serves it from its own host.
   */
  readonly gateway?: string;
}

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/**
 * Which way a rule looks: `send` rules decide what a group's members (and sites) may send, unicast and to
 * multicast groups; `receive` rules decide which multicast groups they may receive copies of.
 */
export type PolicyDirection = 'send' | 'receive';

/**
 * `action` traffic from members of `group` ("*" for every member) to `destination`:
 * a prefix ("10.20.0.0/24"), the members of a group ("group:eng"), or anywhere ("any").
 * A `receive` rule instead says whether members of `group` may receive copies of multicast sent to
 * `destination` (a range inside 224.0.0.0/4 or ff00::/8, or "any" for every group).
 */
export interface Policy {
  readonly id: number;
  readonly action: PolicyAction;
  readonly group: string;
  readonly destination: string;
  readonly proto: Proto;
  readonly ports: PortRange | null;
  readonly direction: PolicyDirection;
}

export type PolicyInput = Omit<Policy, 'id'>;

export interface AuditEntry {
  readonly id: number;
  readonly at: string;
  /** Who: "cli:root", "token:ci", "admin". */
  readonly actor: string;
  /** What: "member.add", "policy.remove", "apply", ... */
  readonly action: string;
  readonly target: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface ApiToken {
  readonly id: number;
  readonly name: string;
  readonly createdAt: string;
  readonly lastUsedAt: string | null;
}

export interface AdminAccount {
  readonly username: string;
  /** scrypt, in the form "scrypt$N$r$p$salt$hash" (base64 parts). */
  readonly passwordHash: string;
  readonly totpSecret: string | null;
}

/** Members by state at one moment (the status page), counted by the store without loading them. */
export interface MemberCounts {
  readonly total: number;
  readonly disabled: number;
  /** Not disabled, and expired at or before the moment. */
  readonly expired: number;
  /** With a status row that says online (disabled or expired ones included, as the gateway reported). */
  readonly online: number;
}

/** What the running gateway last reported about a member. */
/** How a member is connected: WireGuard, or OpenVPN over UDP or over TCP. */
export const CONNECTION_PROTOCOLS = ['wireguard', 'openvpn-udp', 'openvpn-tcp'] as const;
export type ConnectionProtocol = (typeof CONNECTION_PROTOCOLS)[number];

export interface MemberStatus {
  readonly name: string;
  readonly online: boolean;
  /** While online: the protocol of the session that carries its traffic, and since when (ISO); else null. */
  readonly protocol: ConnectionProtocol | null;
  readonly since: string | null;
  readonly endpoint: string | null;
  readonly lastHandshake: string | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Packets the gateway's policy dropped from this member. */
  readonly policyDrops: number;
  readonly updatedAt: string;
  /** On a shared store: the gateway that reported it (the one holding its session while online). */
  readonly gateway?: string;
}

/**
 * The config a member was last handed (CLI, API download, one-time link, QR code), by a fingerprint: a hash of
 * the config's non-secret content (ControlPlane.configFingerprint), never the config itself, since that holds the private key.
 */
export type ConfigProtocol = 'wireguard' | 'openvpn';

export interface ConfigDelivery {
  readonly name: string;
  readonly fingerprint: string;
  readonly deliveredAt: string;
}

/**
 * A member's OpenVPN credentials, issued by Weft's CA (pki.ts): an ECDSA P-256 key and certificate, and a
 * tls-crypt-v2 client key whose metadata carries `clientKeyId`. Secret like a member's WireGuard key.
 */
export interface OpenVpnCredential {
  readonly name: string;
  /** The certificate's serial number, lowercase hex without leading zeros' ambiguity (as pki.ts writes it). */
  readonly serial: string;
  /** Hex; what the tls-crypt-v2 client key's metadata identifies the member by. */
  readonly clientKeyId: string;
  /** PEM. */
  readonly certificate: string;
  /** PEM (PKCS #8). */
  readonly privateKey: string;
  /** PEM "OpenVPN tls-crypt-v2 client key". */
  readonly tlsCryptV2Key: string;
  readonly notAfter: string;
  readonly issuedAt: string;
}

export type RevocationReason = 'rotated' | 'removed';

/** A certificate and tls-crypt-v2 client key that no longer admit anyone. */
export interface OpenVpnRevocation {
  readonly serial: string;
  readonly clientKeyId: string;
  /** The member it was issued to (the member may be gone). */
  readonly name: string;
  readonly revokedAt: string;
  readonly reason: RevocationReason;
}

/** One point of a member's traffic history (bytes moved in the minute starting at `at`). */
export interface TrafficSample {
  readonly name: string;
  readonly at: string;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export type ChangeKind = 'settings' | 'member' | 'group' | 'route' | 'policy' | 'site';

/** One entry of the store's change feed; `rev` only grows. */
export interface Change {
  readonly rev: number;
  readonly kind: ChangeKind;
  /**
   * The member/group name, route prefix or policy id ("" for settings; `gateway/NAME` for a gateway's
   * registration, see gatewayChangeKey).
   */
  readonly key: string;
}

/**
 * A gateway's registration (joined, its endpoint, key or mesh port changed, removed) is a change of kind
 * 'settings' keyed `gateway/NAME`: the gateways are part of the network's configuration, and the feed's kind
 * column admits no other kind before the schema adds one. Followers that know the key tell it from a change of
 * the settings row (key "").
 */
export const GATEWAY_CHANGE_PREFIX = 'gateway/';

export function gatewayChangeKey(name: string): string {
  return GATEWAY_CHANGE_PREFIX + name;
}

/** The gateway whose registration a change is about, if it is one. */
export function changedGateway(change: Pick<Change, 'kind' | 'key'>): string | undefined {
  return change.kind === 'settings' && change.key.startsWith(GATEWAY_CHANGE_PREFIX)
    ? change.key.slice(GATEWAY_CHANGE_PREFIX.length)
    : undefined;
}

/**
 * An IPsec site as the store keeps it (see src/ipsec/site-spec.ts for what each field means to the gateway).
 * IKE identities are text: "192.0.2.1", "2001:db8::1", "fqdn:gw.example.net" (or a bare host name),
 * "email:ops@example.net", "keyid:0a1b…"; null means the outer address. Groups are policy group names.
 */
export interface SiteRecord {
  name: string;
  enabled: boolean;
  /** null: `%any`, the site only answers. */
  remoteAddress: string | null;
  localId: string | null;
  remoteId: string | null;
  /** How both ends authenticate: the pre-shared key, or certificates (RFC 7427 signatures). */
  auth: 'psk' | 'cert';
  /** A secret: never in API or CLI output, never logged. Empty for a certificate site. */
  psk: string;
  forceShortPsk: boolean;
  /** PEM: our certificate, then the intermediate CAs we send with it (certificate sites; else null). */
  certificate: string | null;
  /** PEM private key of `certificate`: a secret kept as the pre-shared key is (certificate sites; else null). */
  privateKey: string | null;
  /** PEM: the CA certificates the peer's certificate must chain to (certificate sites; else null). */
  caCertificates: string | null;
  localSubnets: string[];
  remoteSubnets: string[];
  mode: 'tunnel' | 'transport';
  ikeProposals: string[];
  espProposals: string[];
  allowLegacyGroups: boolean;
  ikeLifetimeSec: number;
  childLifetimeSec: number;
  dpdIntervalSec: number;
  dpdAction: 'restart' | 'clear' | 'hold';
  startAction: 'initiate' | 'wait' | 'on-traffic';
  groups: string[];
  /** Multicast group ranges the site sends and receives ("239.0.0.0/8"); empty: no multicast. */
  multicast: string[];
  // IKE/ESP details (SQLite schema v9 / PostgreSQL v9): see SiteSpec in src/ipsec/site-spec.ts.
  childPerSubnetPair: boolean;
  /** null: the default, 110% of the rekey time. */
  ikeHardLifetimeSec: number | null;
  childHardLifetimeSec: number | null;
  fragmentSize: number;
  /** 0: no byte limit. */
  childRekeyBytes: number;
  childLifeBytes: number;
  /** The gateway that runs IKE for the site on a shared store (as SharedRoute.gateway); absent: every one. */
  gateway?: string;
  createdAt: string;
  updatedAt: string;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Pass as `after` to get the next page; null on the last one. */
  readonly next: string | null;
  readonly total: number;
}
