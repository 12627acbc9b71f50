/**
 * One configured IPsec site as the gateway runs it: the peer firewall, how both sides prove who they are, the
 * subnets on each side, the proposals, lifetimes, liveness checks and when to start. The control plane turns
 * a stored site into this shape; the IPsec shell (src/server/ipsec.ts) turns it into an IKE core's
 * configuration and routes. Plain data: no store, no sockets.
 */
import type { IkeIdentity } from './auth.js';
import type { CertificateConfig } from './cert-auth.js';
import type { IpsecMode } from './child-sa.js';

/** When the gateway starts the IKE SA: at once and kept up; only when the peer does; on the first packet. */
export type SiteStartAction = 'initiate' | 'wait' | 'on-traffic';

/** What happens when the peer stops answering liveness checks: start again, remove the SAs, or keep routes. */
export type SiteDpdAction = 'restart' | 'clear' | 'hold';

export interface SiteSpec {
  readonly name: string;
  /** `weft site down` clears this: no SA is initiated or accepted, existing ones are deleted. */
  readonly enabled: boolean;
  /** The peer's outer address, or null for `%any` (the site then only answers, it never initiates). */
  readonly remoteAddress: string | null;
  /** Our IKE identity; null means our outer address. */
  readonly localId: IkeIdentity | null;
  /** The identity the peer must present; null accepts the peer's address (or any ID for `%any`). */
  readonly remoteId: IkeIdentity | null;
  /** The pre-shared key (a secret: never logged, never in a status). */
  readonly psk: string;
  /** Accept a pre-shared key under 20 characters. */
  readonly forceShortPsk: boolean;
  /**
   * Authenticate with this certificate (and its private key, a secret) instead of the pre-shared key; the
   * peer's certificate must chain to one of its trusted CAs and hold the peer's ID. Absent or null: PSK.
   */
  readonly certificate?: CertificateConfig | null;
  /** Prefixes on our side ("10.10.0.0/16", "fd00:10::/64"). */
  readonly localSubnets: readonly string[];
  /** Prefixes behind the peer; they become routes in the gateway's router. */
  readonly remoteSubnets: readonly string[];
  readonly mode: IpsecMode;
  /**
   * As initiator, one CHILD SA per (local subnet, remote subnet) pair of one family instead of one for all
   * (for peers configured with a child per subnet pair). Absent: false.
   */
  readonly childPerSubnetPair?: boolean;
  /** IKE proposals in preference order, strongSwan's notation ("aes256gcm16-prfsha256-x25519"). */
  readonly ikeProposals: readonly string[];
  /** ESP proposals in preference order ("aes256gcm16", "aes256-sha256-esn"). */
  readonly espProposals: readonly string[];
  /** Offer and accept DH groups 2 and 5 (old Azure and Palo Alto defaults). */
  readonly allowLegacyGroups: boolean;
  /** Seconds until the IKE SA is rekeyed. */
  readonly ikeLifetimeSec: number;
  /** Seconds until a CHILD SA is rekeyed. */
  readonly childLifetimeSec: number;
  /** Seconds between liveness checks when nothing arrives; 0 turns them off. */
  readonly dpdIntervalSec: number;
  readonly dpdAction: SiteDpdAction;
  readonly startAction: SiteStartAction;
  /** Policy groups the site belongs to: traffic from the site is allowed what these groups are allowed. */
  readonly groups: readonly string[];
  /**
   * Multicast group ranges ("239.0.0.0/8"): added to the traffic selectors on both sides, and the site is a
   * multicast port (docs/multicast.md). Absent or empty: none.
   */
  readonly multicast?: readonly string[];
  /** Seconds after which the IKE SA is deleted even if its rekey failed; absent or null: 110% of the rekey time. */
  readonly ikeHardLifetimeSec?: number | null;
  /** The same for each CHILD SA. */
  readonly childHardLifetimeSec?: number | null;
  /** The largest datagram of one IKE fragment (RFC 7383); absent: 1280. */
  readonly fragmentSize?: number;
  /** Bytes after which a CHILD SA is rekeyed (strongSwan's rekey_bytes); absent or 0: no byte limit. */
  readonly childRekeyBytes?: number;
  /** Bytes after which a CHILD SA is deleted (strongSwan's life_bytes); absent or 0: no byte limit. */
  readonly childLifeBytes?: number;
}

/** Proposals offered when a site names none: AEAD first, then a CBC suite most firewalls accept. */
export const DEFAULT_IKE_PROPOSALS: readonly string[] = [
  'aes256gcm16-prfsha256-x25519',
  'aes256gcm16-prfsha384-ecp384',
  'aes256-sha256-modp2048',
];
export const DEFAULT_ESP_PROPOSALS: readonly string[] = ['aes256gcm16', 'aes256-sha256'];

export const SITE_DEFAULTS = {
  mode: 'tunnel',
  ikeLifetimeSec: 14_400,
  childLifetimeSec: 3_600,
  dpdIntervalSec: 30,
  dpdAction: 'restart',
  forceShortPsk: false,
  allowLegacyGroups: false,
} as const satisfies Partial<SiteSpec>;

/** One CHILD SA as a status shows it (no keys). SPIs are 8 hex digits. */
export interface ChildSaView {
  readonly inboundSpi: string;
  readonly outboundSpi: string;
  readonly mode: IpsecMode;
  /** The negotiated ESP proposal ("aes256gcm16-esn"). */
  readonly proposal: string;
  /** UDP 4500 (NAT-T) or raw ESP (protocol 50). */
  readonly carrier: 'udp' | 'raw';
  readonly localSubnets: readonly string[];
  readonly remoteSubnets: readonly string[];
  /** ISO 8601 times. */
  readonly establishedAt: string;
  readonly rekeyedAt: string | null;
  readonly packetsIn: number;
  readonly bytesIn: number;
  readonly packetsOut: number;
  readonly bytesOut: number;
  /** ESP drops on this SA by reason (replay, bad ICV, ...), only the non-zero ones. */
  readonly drops: Readonly<Record<string, number>>;
}

export interface IkeSaView {
  /** SPIs as 16 hex digits, initiator's first. */
  readonly spiI: string;
  readonly spiR: string;
  readonly initiator: boolean;
  /** The negotiated IKE proposal ("aes256gcm16-prfsha256-x25519"). */
  readonly proposal: string;
  /** The peer's authenticated ID ("fqdn:vpn.example.net", "ipv4:192.0.2.7"). */
  readonly peerId: string;
  /** The peer's current UDP endpoint ("192.0.2.7:4500", "[2001:db8::7]:500"). */
  readonly remote: string;
  /** UDP encapsulation in use (a NAT was detected or forced). */
  readonly encapsulated: boolean;
  readonly establishedAt: string;
  readonly rekeyedAt: string | null;
}

/** The live state of one site, as the gateway running it reports it. */
export interface SiteStatus {
  readonly name: string;
  /** disabled: `site down`; down: no IKE SA; connecting: an exchange is under way; up: at least one CHILD SA. */
  readonly state: 'disabled' | 'down' | 'connecting' | 'up';
  readonly ike: IkeSaView | null;
  readonly children: readonly ChildSaView[];
  /** The last failure (no proposal chosen, authentication failed, peer unreachable, ...) in words. */
  readonly lastError: { readonly at: string; readonly message: string } | null;
  /** When this status was taken (ISO 8601). */
  readonly at: string;
}
