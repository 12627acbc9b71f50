/**
 * The API's request and response shapes, as zod schemas: requests are checked against them, and the OpenAPI
 * document is generated from them (openapi.ts), so the two cannot drift apart.
 *
 * Request schemas check shapes and types only. What a value means (a valid name, a prefix without host
 * bits, an address inside the subnet, a port range) is the control plane's to judge (validate.ts), so the
 * CLI, `weft apply` and the API give the same answer with the same field.
 */
import { z } from 'zod';
import {
  desiredStateSchema,
  multicastQuerierObject,
  multicastStaticObject,
  openVpnSettingsObject,
  settingsObject,
} from '../control/desired-state.js';
import { instant } from '../control/validate.js';

// ---- building blocks ----

const name = z.string().describe('1-63 characters of letters, digits, ".", "_" or "-"');
const isoTime = z.string().meta({ format: 'date-time' });
/** Query and path values arrive as text: "25" is 25; "0x19", "2.5e1", "025" and " 25" are refused. */
const intText = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,15})$/, 'must be a whole number in decimal')
  .pipe(z.coerce.number<string>().int());

// ---- requests: path parameters ----

export const NameParams = z.object({ name: name.min(1).describe('The name') });
export const IdParams = z.object({ id: intText.describe('The numeric id') });
export const TokenParams = z.object({
  token: z.string().describe('The token of the link, as POST /members/{name}/links gave it'),
});
export const CidrParams = z.object({
  cidr: z.string().describe('The prefix, its slash percent-encoded ("10.20.0.0%2F24")'),
});
/** The same prefix with its slash left as it is ("/routes/10.20.0.0/24"): two path segments. */
export const CidrPartsParams = z.object({
  address: z.string().describe('The prefix\'s address ("10.20.0.0", "fd20::")'),
  bits: z
    .string()
    .regex(/^[0-9]{1,3}$/, 'must be a prefix length such as 24')
    .describe('The prefix length ("24")'),
});

// ---- requests: query strings ----

export const MemberListQuery = z.object({
  after: z.string().optional().describe('The `next` of the previous page'),
  limit: intText.optional().describe('Page size, 1-1000 (default 100)'),
  search: z.string().optional().describe('Case-insensitive part of a name, address or group'),
});

/** The query of the other list endpoints: the same parameters as GET /members. */
export const ListQuery = z.object({
  after: z.string().optional().describe('The `next` of the previous page'),
  limit: intText.optional().describe('Page size, 1-1000 (default 100)'),
  search: z.string().optional().describe('Case-insensitive part of what the list shows'),
});

export const TrafficQuery = z.object({
  since: isoTime
    .refine((s) => {
      try {
        instant('since', s);
        return true;
      } catch {
        return false;
      }
    }, 'must be an ISO 8601 time with its offset (2027-01-31T18:00:00Z)')
    .optional()
    .describe('Start of the history (default: 24 hours ago)'),
});

export const AuditQuery = z.object({
  before: intText.optional().describe('Entries with ids below this (the last id of the previous page)'),
  limit: intText.optional().describe('How many, 1-1000 (default 100)'),
  target: z.string().optional().describe('Only entries about this member, group, route or "#policy-id"'),
});

export const ApplyQuery = z.object({
  dryRun: z.stringbool().optional().describe('Report the changes without making them'),
});

// ---- requests: bodies ----

export const SettingsPatch = z
  .strictObject({
    endpoint: z.string().optional().describe('HOST[:PORT] members dial'),
    listenPort: z.number().int().optional(),
    interfaceName: z.string().optional(),
    dns: z.array(z.string()).optional(),
    natEgress: z.string().nullable().optional(),
    defaultPolicy: z.enum(['allow', 'deny']).optional(),
    persistentKeepalive: z.number().int().optional(),
    mtu: z.number().int().optional(),
    apiListen: z.string().optional(),
    openvpn: openVpnSettingsObject.partial().strict().optional().describe('Only the keys given change'),
    multicast: z.boolean().optional().describe('Multicast across the overlay (applies at the next start)'),
    multicastLan: z
      .string()
      .nullable()
      .optional()
      .describe('LAN interface for the IGMP proxy, e.g. eth1; null: none (applies at the next start)'),
    multicastQuerier: multicastQuerierObject
      .partial()
      .strict()
      .nullable()
      .optional()
      .describe("The querier's timers: only the keys given change; null: RFC 3376's defaults (applied live)"),
    multicastStatic: z
      .array(multicastStaticObject)
      .nullable()
      .optional()
      .describe('Static multicast memberships, the whole list; null: none (applied live)'),
  })
  .describe('Settings to change; the subnets cannot change (members hold addresses in them)');

export const MemberInput = z.strictObject({
  name,
  ip: z.string().nullable().optional().describe('A fixed address in the subnet (default: the lowest free)'),
  groups: z.array(z.string()).optional(),
  expiresAt: z.string().nullable().optional().describe('YYYY-MM-DD, an ISO 8601 time, or null for never'),
  publicKey: z
    .string()
    .nullable()
    .optional()
    .describe("The member's own public key; without one the server generates the key pair"),
  fullTunnel: z.boolean().optional(),
  disabled: z.boolean().optional(),
});

export const MemberPatch = z.strictObject({
  groups: z.array(z.string()).optional(),
  expiresAt: z.string().nullable().optional(),
  fullTunnel: z.boolean().optional(),
  disabled: z.boolean().optional(),
});

export const RotateInput = z.strictObject({
  publicKey: z
    .string()
    .nullable()
    .optional()
    .describe("The member's new public key; without one the server generates a new key pair"),
  only: z
    .enum(['wireguard', 'openvpn'])
    .optional()
    .describe(
      "Rotate only this protocol's credentials (default both: a new WireGuard key, and the OpenVPN " +
        'certificate and tls-crypt-v2 key revoked, new ones issued at the next profile download)',
    ),
});

export const GroupInput = z.strictObject({ name, description: z.string().optional() });
export const GroupPatch = z.strictObject({ description: z.string() });

export const RouteInput = z.strictObject({
  cidr: z.string().describe('A prefix behind the gateway, e.g. 10.20.0.0/24'),
  description: z.string().optional(),
  gateway: z
    .string()
    .optional()
    .describe(
      'The registered gateway whose host serves it; the others route it there (absent: every gateway)',
    ),
});

const PortRange = z.strictObject({ from: z.number().int(), to: z.number().int() });

export const PolicyInput = z.strictObject({
  action: z.enum(['allow', 'deny']),
  group: z.string().describe('A group name, or "*" for every member'),
  destination: z
    .string()
    .describe('A prefix, an address, "group:NAME" or "any"; for a receive rule a multicast range or "any"'),
  proto: z.enum(['any', 'tcp', 'udp', 'icmp']).optional(),
  ports: PortRange.partial({ to: true })
    .nullable()
    .optional()
    .describe('tcp/udp only; `to` defaults to `from`'),
  direction: z
    .enum(['send', 'receive'])
    .optional()
    .describe(
      '"send" (the default): what the group may send; "receive": which multicast groups the group may receive',
    ),
});

export const TokenInput = z.strictObject({ name });

/** Long enough for any passphrase, short enough that nobody makes the server hash a megabyte. */
const password = z.string().max(1024);

export const LoginInput = z.strictObject({
  username: z.string().max(100),
  password,
  totp: z.string().max(20).optional().describe('The current code of the authenticator app, when TOTP is on'),
});

export const TotpCode = z.strictObject({
  code: z.string().max(20).describe('The current 6-digit code of the authenticator app'),
});

export const PasswordChange = z.strictObject({
  current: password,
  next: password.describe('At least 12 characters'),
});

export const LinkInput = z.strictObject({
  ttlMinutes: z.number().int().optional().describe('How long the link works, 1-10080 minutes (default 1440)'),
  protocol: z
    .enum(['wireguard', 'openvpn'])
    .optional()
    .describe('Which config the link hands out: the wg-quick config (default) or the OpenVPN profile'),
});

export const ConfigQuery = z.object({
  format: z
    .enum(['wireguard', 'openvpn'])
    .optional()
    .describe('wireguard (default): a wg-quick .conf; openvpn: an inline .ovpn profile'),
});

export const PackQuery = z.object({
  os: z.enum(['windows', 'linux', 'macos']).describe('windows: PowerShell; linux, macos: sh'),
  protocol: z.enum(['openvpn', 'wireguard']).optional().describe('Default openvpn'),
});

/** The document of `weft apply`, as desired-state.ts defines it (JSON here, or YAML with its media type). */
export const DesiredState = desiredStateSchema.describe(
  'The declarative state of `weft apply` (as JSON, or as YAML with Content-Type application/yaml)',
);

// ---- responses ----

export const ErrorBody = z.object({
  error: z.object({
    code: z.string().describe('A stable WEFT_ERR_* code'),
    message: z.string(),
    field: z.string().optional().describe('The input field the error is about'),
  }),
});

export const Health = z.object({ ok: z.literal(true) });

export const Settings = settingsObject;

export const LiveGateway = z.object({
  interfaceName: z.string(),
  listenPort: z.number().int(),
  publicKey: z.string(),
  membersOnline: z.number().int(),
  rxBytes: z.number(),
  txBytes: z.number(),
  startedAt: isoTime,
  store: z
    .object({
      kind: z.enum(['sqlite', 'postgres']),
      location: z.string().describe('The SQLite file, or the PostgreSQL URL without its password'),
      role: z.enum(['standalone', 'shared']),
      reachable: z.boolean(),
      revision: z.number().int().describe('The change-feed revision this gateway has applied'),
      lagSeconds: z.number().describe('Seconds since this gateway last reached the head of the change feed'),
    })
    .optional(),
  mesh: z
    .object({
      name: z.string().describe("This gateway's registered name"),
      port: z.number().int().describe('The UDP port of its mesh interface'),
      publicKey: z.string().describe("This gateway's own key (DATA/gateway-key), not the members' one"),
      peers: z.array(
        z.object({
          name: z.string(),
          publicKey: z.string(),
          endpoint: z.string().nullable(),
          lastHandshake: isoTime.nullable(),
          rxBytes: z.number(),
          txBytes: z.number(),
          routes: z.number().int().describe('Member addresses routed to this peer'),
          delivered: z.number().describe('Packets from this peer delivered here'),
        }),
      ),
    })
    .optional()
    .describe('The peering mesh with the other gateways (shared store, joined gateway)'),
  failover: z
    .object({
      address: z.string().describe('The shared member-facing address, ADDR/BITS'),
      interfaceName: z.string().describe('The interface that carries it on the holder'),
      role: z
        .enum(['holder', 'standby', 'stopped'])
        .describe('holder: the address is on this gateway; standby: another gateway holds it'),
      since: isoTime.describe('When this gateway took that role'),
      takeovers: z.number().int().describe('Times this gateway took the address over since it started'),
    })
    .optional()
    .describe('Present when this gateway runs with --shared-address (docs/scale-out.md)'),
});

export const Status = z.object({
  settings: Settings.pick({
    endpoint: true,
    listenPort: true,
    interfaceName: true,
    subnet: true,
    subnet6: true,
    defaultPolicy: true,
  }),
  gateway: z.object({ publicKey: z.string(), ip: z.string(), ip6: z.string().nullable() }),
  live: LiveGateway.nullable().describe('Figures from the running gateway; null when it is not running here'),
  members: z.object({
    total: z.number().int(),
    active: z.number().int().describe('Enabled and not expired'),
    disabled: z.number().int(),
    expired: z.number().int().describe('Enabled but past their expiry'),
    online: z.number().int().describe('Online in the gateway’s last report'),
  }),
});

export const MemberStatus = z.object({
  name: z.string(),
  online: z.boolean(),
  /** While online: WireGuard, or OpenVPN over UDP or TCP, and since when; null when offline. */
  protocol: z.enum(['wireguard', 'openvpn-udp', 'openvpn-tcp']).nullable(),
  since: isoTime.nullable(),
  endpoint: z.string().nullable(),
  lastHandshake: isoTime.nullable(),
  rxBytes: z.number(),
  txBytes: z.number(),
  policyDrops: z.number(),
  updatedAt: isoTime,
  gateway: z
    .string()
    .optional()
    .describe('On a shared store: the gateway that reported it (the one holding its session while online)'),
});

export const MemberView = z.object({
  name: z.string(),
  ip: z.string(),
  ip6: z.string().nullable(),
  publicKey: z.string(),
  hasPrivateKey: z.boolean().describe('Whether the server holds the private key (and so a complete config)'),
  groups: z.array(z.string()),
  disabled: z.boolean(),
  expiresAt: isoTime.nullable(),
  fullTunnel: z.boolean(),
  createdAt: isoTime,
  updatedAt: isoTime,
  active: z.boolean().describe('Enabled and not expired: the gateway accepts it'),
  status: MemberStatus.nullable(),
  configDownload: z
    .object({
      at: isoTime.describe('When the member was last handed its config (download, QR code, link, CLI)'),
      stale: z
        .boolean()
        .describe('The config changed since it was downloaded (policies, routes, settings, keys or groups)'),
    })
    .nullable()
    .describe('null until the config is handed out'),
  openvpnConfigDownload: z
    .object({
      at: isoTime.describe('When the member was last handed its OpenVPN profile'),
      stale: z
        .boolean()
        .describe('The profile changed since (rotated or expired credentials, ports, ciphers, server name)'),
    })
    .nullable()
    .describe('null until the OpenVPN profile is handed out'),
});

export const MemberPage = z.object({
  items: z.array(MemberView),
  next: z.string().nullable().describe('Pass as `after` for the next page; null on the last one'),
  total: z.number().int(),
});

export const TrafficSample = z.object({
  name: z.string(),
  at: isoTime.describe('Start of the minute'),
  rxBytes: z.number(),
  txBytes: z.number(),
});

export const Group = z.object({ name: z.string(), description: z.string() });
export const GroupWithCount = Group.extend({ members: z.number().int() });

/** A page of a list, in the shape of MemberPage. */
function pageOf<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    next: z.string().nullable().describe('Pass as `after` for the next page; null on the last one'),
    total: z.number().int().describe('How many match, on every page'),
  });
}

export const GroupPage = pageOf(GroupWithCount);

export const SharedRoute = z.object({
  cidr: z.string(),
  description: z.string(),
  gateway: z.string().optional().describe('The gateway serving it (absent: every gateway)'),
});
export const RoutePage = pageOf(SharedRoute);

export const Policy = z.object({
  id: z.number().int(),
  action: z.enum(['allow', 'deny']),
  group: z.string(),
  destination: z.string(),
  proto: z.enum(['any', 'tcp', 'udp', 'icmp']),
  ports: PortRange.nullable(),
  direction: z.enum(['send', 'receive']),
});

export const PolicyPage = pageOf(Policy);

export const AuditEntry = z.object({
  id: z.number().int(),
  at: isoTime,
  actor: z.string().describe('"token:NAME", "cli:USER", "admin", ...'),
  action: z.string(),
  target: z.string(),
  detail: z.record(z.string(), z.unknown()),
});

export const ApiToken = z.object({
  id: z.number().int(),
  name: z.string(),
  createdAt: isoTime,
  lastUsedAt: isoTime.nullable(),
});

export const TokenPage = pageOf(ApiToken);

export const CreatedToken = z.object({
  token: ApiToken,
  secret: z.string().describe('Shown this once; the server keeps only its hash'),
});

export const StateChange = z.object({
  op: z.enum(['add', 'update', 'remove']),
  kind: z.enum(['settings', 'group', 'member', 'route', 'policy', 'site']),
  target: z.string(),
  detail: z.record(z.string(), z.unknown()).optional(),
});

export const ApplyResult = z.object({ changes: z.array(StateChange) });

export const SessionInfo = z.object({
  username: z.string(),
  csrfToken: z.string().describe('Send it as X-CSRF-Token with every request other than GET and HEAD'),
  totpEnabled: z.boolean(),
});

export const TotpEnrolment = z.object({
  secret: z.string().describe('The new TOTP secret in base32 (RFC 4648), for typing into the app'),
  otpauthUrl: z.string().describe('The otpauth:// URI the QR code holds'),
  qrSvg: z.string().describe('The QR code of otpauthUrl, as an SVG document'),
});

export const TotpState = z.object({ totpEnabled: z.boolean() });

export const NextIp = z.object({ ip: z.string(), ip6: z.string().nullable() });

export const CreatedLink = z.object({
  url: z.string().describe('The path of the link, "/dl/<token>"; it works once'),
  expiresAt: isoTime,
});

// ---- IPsec sites ----

const siteFields = {
  enabled: z
    .boolean()
    .optional()
    .describe('false: the gateway deletes its SAs and neither starts nor answers'),
  remoteAddress: z
    .string()
    .nullable()
    .optional()
    .describe('The peer\'s outer address, or "%any"/null: it only answers'),
  localId: z
    .string()
    .nullable()
    .optional()
    .describe('Our IKE ID: an address, fqdn:NAME (or a bare name), email:ADDR, keyid:HEX; null: our address'),
  remoteId: z.string().nullable().optional().describe('The ID the peer must present; null: its address'),
  auth: z
    .enum(['psk', 'cert'])
    .optional()
    .describe('psk (default) or cert; a site given a certificate without auth is a certificate site'),
  psk: z.string().optional().describe('The pre-shared key (write-only; generated on create when absent)'),
  forceShortPsk: z.boolean().optional().describe('Accept a key under 20 characters'),
  certificate: z
    .string()
    .optional()
    .describe('PEM: our certificate, then the intermediate CAs sent with it (certificate sites)'),
  privateKey: z.string().optional().describe('PEM private key of the certificate (write-only)'),
  caCertificates: z
    .string()
    .optional()
    .describe("PEM: the CA certificates the peer's certificate must chain to (certificate sites)"),
  localSubnets: z.array(z.string()).describe('Prefixes on our side'),
  remoteSubnets: z.array(z.string()).describe('Prefixes behind the peer (routes into the tunnel)'),
  mode: z.enum(['tunnel', 'transport']).optional(),
  ikeProposals: z.array(z.string()).optional().describe('e.g. aes256gcm16-prfsha256-x25519, in order'),
  espProposals: z.array(z.string()).optional().describe('e.g. aes256gcm16, in order'),
  allowLegacyGroups: z.boolean().optional().describe('Allow DH groups 2 and 5'),
  ikeLifetimeSec: z.number().int().optional(),
  childLifetimeSec: z.number().int().optional(),
  dpdIntervalSec: z.number().int().optional().describe('0: no liveness checks'),
  dpdAction: z.enum(['restart', 'clear', 'hold']).optional(),
  startAction: z.enum(['initiate', 'wait', 'on-traffic']).optional(),
  groups: z.array(z.string()).optional(),
  multicast: z
    .array(z.string())
    .optional()
    .describe('Multicast group ranges the site sends and receives (e.g. 239.0.0.0/8); tunnel mode only'),
  childPerSubnetPair: z
    .boolean()
    .optional()
    .describe('As initiator, one CHILD SA per (local subnet, remote subnet) pair instead of one for all'),
  ikeHardLifetimeSec: z
    .number()
    .int()
    .nullable()
    .optional()
    .describe(
      'Delete the IKE SA this long after setup even if its rekey failed; null: 110% of ikeLifetimeSec',
    ),
  childHardLifetimeSec: z
    .number()
    .int()
    .nullable()
    .optional()
    .describe('The same for each CHILD SA against childLifetimeSec; null: 110%'),
  fragmentSize: z
    .number()
    .int()
    .optional()
    .describe('Largest datagram of one IKE fragment (RFC 7383), 576 to 9000; default 1280'),
  childRekeyBytes: z
    .number()
    .int()
    .optional()
    .describe('Rekey a CHILD SA after this many bytes; 0: no limit'),
  childLifeBytes: z
    .number()
    .int()
    .optional()
    .describe('Delete a CHILD SA after this many bytes; 0: no limit'),
  gateway: z
    .string()
    .nullable()
    .optional()
    .describe(
      'The registered gateway that runs IKE for the site; the others route its subnets there (null or "": every one)',
    ),
};

export const SiteInput = z.strictObject({ name, ...siteFields });
export const SitePatch = z.strictObject({
  ...siteFields,
  localSubnets: siteFields.localSubnets.optional(),
  remoteSubnets: siteFields.remoteSubnets.optional(),
});

const ChildSaView = z.object({
  inboundSpi: z.string(),
  outboundSpi: z.string(),
  mode: z.enum(['tunnel', 'transport']),
  proposal: z.string().describe('The negotiated ESP proposal'),
  carrier: z.enum(['udp', 'raw']).describe('UDP 4500 (NAT-T) or raw ESP'),
  localSubnets: z.array(z.string()),
  remoteSubnets: z.array(z.string()),
  establishedAt: isoTime,
  rekeyedAt: isoTime.nullable(),
  packetsIn: z.number(),
  bytesIn: z.number(),
  packetsOut: z.number(),
  bytesOut: z.number(),
  drops: z.record(z.string(), z.number()),
});

export const SiteStatus = z.object({
  name: z.string(),
  state: z.enum(['disabled', 'down', 'connecting', 'up']),
  ike: z
    .object({
      spiI: z.string(),
      spiR: z.string(),
      initiator: z.boolean(),
      proposal: z.string().describe('The negotiated IKE proposal'),
      peerId: z.string(),
      remote: z.string(),
      encapsulated: z.boolean(),
      establishedAt: isoTime,
      rekeyedAt: isoTime.nullable(),
    })
    .nullable(),
  children: z.array(ChildSaView),
  lastError: z.object({ at: isoTime, message: z.string() }).nullable(),
  at: isoTime.describe('When the gateway took this status'),
});

export const SiteView = z.object({
  name: z.string(),
  enabled: z.boolean(),
  remoteAddress: z.string().nullable().describe('null: %any'),
  localId: z.string().nullable(),
  remoteId: z.string().nullable(),
  auth: z.enum(['psk', 'cert']),
  forceShortPsk: z.boolean(),
  certificate: z.string().nullable().describe('PEM: our certificate and chain; null for a PSK site'),
  caCertificates: z.string().nullable().describe('PEM: the CAs trusted for the peer; null for a PSK site'),
  localSubnets: z.array(z.string()),
  remoteSubnets: z.array(z.string()),
  mode: z.enum(['tunnel', 'transport']),
  ikeProposals: z.array(z.string()),
  espProposals: z.array(z.string()),
  allowLegacyGroups: z.boolean(),
  ikeLifetimeSec: z.number().int(),
  childLifetimeSec: z.number().int(),
  dpdIntervalSec: z.number().int(),
  dpdAction: z.enum(['restart', 'clear', 'hold']),
  startAction: z.enum(['initiate', 'wait', 'on-traffic']),
  groups: z.array(z.string()),
  multicast: z.array(z.string()).describe('Multicast group ranges (empty: the site is no multicast port)'),
  childPerSubnetPair: z.boolean(),
  ikeHardLifetimeSec: z.number().int().nullable(),
  childHardLifetimeSec: z.number().int().nullable(),
  fragmentSize: z.number().int(),
  childRekeyBytes: z.number().int(),
  childLifeBytes: z.number().int(),
  gateway: z.string().optional().describe('The gateway serving the site (absent: every gateway)'),
  createdAt: isoTime,
  updatedAt: isoTime,
  status: SiteStatus.nullable().describe('What the running gateway last reported; null: nothing yet'),
});

export const CreatedSite = SiteView.extend({
  psk: z
    .string()
    .optional()
    .describe('The generated pre-shared key, shown this once (absent when one was given)'),
});

export const SiteList = z.object({ items: z.array(SiteView) });

export const RemoteConfigQuery = z.object({
  format: z.enum(['swanctl', 'aws', 'pfsense']).describe('The firewall at the other end'),
});

export const OpenApiDocument = z.record(z.string(), z.unknown()).describe('This document');

/** Schemas that appear under components.schemas by these names; others are named after their operation. */
export const NAMED_SCHEMAS: Readonly<Record<string, z.ZodType>> = {
  Error: ErrorBody,
  Settings,
  SettingsPatch,
  Status,
  LiveGateway,
  MemberInput,
  MemberPatch,
  MemberView,
  MemberStatus,
  MemberPage,
  TrafficSample,
  Group,
  GroupWithCount,
  GroupPage,
  SharedRoute,
  RoutePage,
  PolicyPage,
  TokenPage,
  Policy,
  PolicyInput,
  AuditEntry,
  ApiToken,
  CreatedToken,
  DesiredState,
  StateChange,
  ApplyResult,
  SessionInfo,
  SiteInput,
  SitePatch,
  SiteView,
  SiteStatus,
  SiteList,
  CreatedSite,
};
