/**
 * The shapes the console reads from and sends to the REST API, as src/api/schemas.ts declares them (the
 * OpenAPI document at /api/v1/openapi.json is generated from the same schemas). Times are ISO 8601 strings.
 */
import type { MulticastPatch, Querier, StaticMembership } from './multicast-values.js';

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly field?: string };
}

export interface Session {
  readonly username: string;
  readonly csrfToken: string;
  readonly totpEnabled: boolean;
}

export interface LoginInput {
  readonly username: string;
  readonly password: string;
  readonly totp?: string;
}

export interface TotpEnrolment {
  readonly secret: string;
  readonly otpauthUrl: string;
  /** An SVG document (text) of the otpauth URL as a QR code. */
  readonly qrSvg: string;
}

export type PolicyAction = 'allow' | 'deny';
export type Proto = 'any' | 'tcp' | 'udp' | 'icmp';

export interface Settings {
  readonly endpoint: string;
  readonly listenPort: number;
  readonly interfaceName: string;
  readonly subnet: string;
  readonly subnet6: string | null;
  readonly dns: readonly string[];
  readonly natEgress: string | null;
  readonly defaultPolicy: PolicyAction;
  readonly persistentKeepalive: number;
  readonly mtu: number;
  readonly apiListen: string;
  readonly multicast?: boolean;
  readonly multicastLan?: string | null;
  readonly multicastQuerier?: Querier;
  readonly multicastStatic?: readonly StaticMembership[];
}

export interface SettingsPatch extends MulticastPatch {
  endpoint?: string;
  dns?: string[];
  natEgress?: string | null;
  defaultPolicy?: PolicyAction;
  persistentKeepalive?: number;
  mtu?: number;
}

export interface LiveGateway {
  readonly interfaceName: string;
  readonly listenPort: number;
  readonly publicKey: string;
  readonly membersOnline: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly startedAt: string;
}

export interface Status {
  readonly settings: Pick<
    Settings,
    'endpoint' | 'listenPort' | 'interfaceName' | 'subnet' | 'subnet6' | 'defaultPolicy'
  >;
  readonly gateway: { readonly publicKey: string; readonly ip: string; readonly ip6: string | null };
  /** Null when the gateway is not running in the API's process. */
  readonly live: LiveGateway | null;
  readonly members: {
    readonly total: number;
    readonly active: number;
    readonly disabled: number;
    readonly expired: number;
    readonly online: number;
  };
}

/** How a member is connected: WireGuard, or OpenVPN over UDP or TCP. */
export type ConnectionProtocol = 'wireguard' | 'openvpn-udp' | 'openvpn-tcp';

export const PROTOCOL_LABELS: Readonly<Record<ConnectionProtocol, string>> = {
  wireguard: 'WireGuard',
  'openvpn-udp': 'OpenVPN UDP',
  'openvpn-tcp': 'OpenVPN TCP',
};

export interface MemberStatus {
  readonly name: string;
  readonly online: boolean;
  /** While online: the protocol carrying the member, and since when; null otherwise. */
  readonly protocol: ConnectionProtocol | null;
  readonly since: string | null;
  readonly endpoint: string | null;
  readonly lastHandshake: string | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly policyDrops: number;
  readonly updatedAt: string;
}

export interface Member {
  readonly name: string;
  readonly ip: string;
  readonly ip6: string | null;
  readonly publicKey: string;
  /** Whether the server holds the private key (and so can make a complete config and QR code). */
  readonly hasPrivateKey: boolean;
  readonly groups: readonly string[];
  readonly disabled: boolean;
  readonly expiresAt: string | null;
  readonly fullTunnel: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Enabled and not expired. */
  readonly active: boolean;
  readonly status: MemberStatus | null;
  /** The config last handed out (download, QR code, link, CLI); null until then. */
  readonly configDownload: { readonly at: string; readonly stale: boolean } | null;
  readonly openvpnConfigDownload: { readonly at: string; readonly stale: boolean } | null;
}

export interface MemberPage {
  readonly items: readonly Member[];
  readonly next: string | null;
  readonly total: number;
}

export interface MemberInput {
  name: string;
  ip?: string | null;
  groups?: string[];
  expiresAt?: string | null;
  publicKey?: string | null;
  fullTunnel?: boolean;
}

export interface MemberPatch {
  groups?: string[];
  expiresAt?: string | null;
  fullTunnel?: boolean;
}

export interface NextIp {
  readonly ip: string;
  readonly ip6: string | null;
}

export interface DownloadLink {
  /** Relative to the console's origin: "/dl/<token>". */
  readonly url: string;
  readonly expiresAt: string;
}

export interface TrafficSample {
  readonly name: string;
  /** The start of the minute. */
  readonly at: string;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface Group {
  readonly name: string;
  readonly description: string;
}

export interface GroupWithCount extends Group {
  readonly members: number;
}

export interface SharedRoute {
  readonly cidr: string;
  readonly description: string;
  /** The registered gateway serving it; absent: every gateway. */
  readonly gateway?: string;
}

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

export interface Policy {
  readonly id: number;
  readonly action: PolicyAction;
  readonly group: string;
  readonly destination: string;
  readonly proto: Proto;
  readonly ports: PortRange | null;
  /** "receive": which multicast groups the group's members may receive copies of. */
  readonly direction: PolicyDirection;
}

export type PolicyDirection = 'send' | 'receive';

export interface PolicyInput {
  action: PolicyAction;
  group: string;
  destination: string;
  proto?: Proto;
  ports?: PortRange | null;
  direction?: PolicyDirection;
}

export interface AuditEntry {
  readonly id: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

/** An IPsec site as GET /sites shows it (the pre-shared key is write-only). */
export interface Site {
  readonly name: string;
  readonly enabled: boolean;
  readonly remoteAddress: string | null;
  readonly localId: string | null;
  readonly remoteId: string | null;
  /** 'cert': our certificate (and chain) and the trusted CAs, PEM; the private key never comes back. */
  readonly auth: 'psk' | 'cert';
  readonly certificate: string | null;
  readonly caCertificates: string | null;
  readonly localSubnets: readonly string[];
  readonly remoteSubnets: readonly string[];
  readonly mode: 'tunnel' | 'transport';
  readonly ikeProposals: readonly string[];
  readonly espProposals: readonly string[];
  readonly allowLegacyGroups: boolean;
  readonly ikeLifetimeSec: number;
  readonly childLifetimeSec: number;
  readonly dpdIntervalSec: number;
  readonly dpdAction: string;
  readonly startAction: string;
  readonly groups: readonly string[];
  readonly forceShortPsk: boolean;
  readonly childPerSubnetPair: boolean;
  /** null: 110% of the rekey time. */
  readonly ikeHardLifetimeSec: number | null;
  readonly childHardLifetimeSec: number | null;
  readonly fragmentSize: number;
  /** 0: no byte limit. */
  readonly childRekeyBytes: number;
  readonly childLifeBytes: number;
  /** Multicast group ranges the site sends and receives. */
  readonly multicast: readonly string[];
  /** The registered gateway serving it; absent: every gateway. */
  readonly gateway?: string;
  readonly status: SiteStatus | null;
}

export interface SiteStatus {
  readonly state: 'disabled' | 'down' | 'connecting' | 'up';
  readonly ike: {
    readonly proposal: string;
    readonly peerId: string;
    readonly remote: string;
    readonly initiator: boolean;
    readonly encapsulated: boolean;
    readonly establishedAt: string;
    readonly rekeyedAt: string | null;
  } | null;
  readonly children: readonly {
    readonly inboundSpi: string;
    readonly outboundSpi: string;
    readonly proposal: string;
    readonly carrier: 'udp' | 'raw';
    readonly localSubnets: readonly string[];
    readonly remoteSubnets: readonly string[];
    readonly bytesIn: number;
    readonly bytesOut: number;
    readonly establishedAt: string;
    readonly rekeyedAt: string | null;
  }[];
  readonly lastError: { readonly at: string; readonly message: string } | null;
  readonly at: string;
}

/** POST /sites and PATCH /sites/{name}. */
export type SiteInput = Record<string, unknown>;

/** One item of GET /gateways (src/api/routes-gateways.ts). */
export interface GatewayItem {
  readonly name: string;
  readonly endpoint: string;
  readonly region: string;
  readonly publicKey: string;
  readonly registeredAt: string;
  readonly lastSeen: string;
  readonly silentMs: number;
  readonly state: 'up' | 'silent';
  /** null: the member statuses do not say which gateway holds a member. */
  readonly membersOnline: number | null;
}

/** GET /multicast (src/api/routes-multicast.ts). */
export interface MulticastState {
  readonly on: boolean;
  readonly live: {
    readonly counters: { readonly packets: number; readonly copies: number; readonly reports: number };
    readonly drops: Readonly<Record<string, number>>;
    readonly groups: readonly {
      readonly group: string;
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
  } | null;
}
