/**
 * The settings for the firewall at the other end of a site (`weft site show NAME --remote-config FORMAT`),
 * mirrored from ours: their local subnets are our remote ones, their ID is the one we expect, and so on.
 *
 *   swanctl  a strongSwan swanctl.conf connection and its secret, ready to load;
 *   aws      the values of an AWS Site-to-Site VPN connection's tunnel options, by their console names;
 *   pfsense  the Phase 1 and Phase 2 fields of pfSense's IPsec pages, by their GUI names.
 *
 * Proposals are mapped transform by transform (src/ipsec/algorithms.ts parses them). A transform the vendor
 * has no equivalent for is never silently dropped: the output says so beside the field.
 */
import { X509Certificate } from 'node:crypto';

import { parseProposal } from '../ipsec/algorithms.js';
import { DH_GROUP, ENCR, ESN, FRAGMENT_SIZE, INTEG, PRF, TRANSFORM_TYPE } from '../ipsec/constants.js';
import type { Transform } from '../ipsec/messages.js';
import { siteGroupSelectors } from '../multicast/site-selectors.js';
import { parseAddress } from '../net/ip.js';
import type { SiteRecord } from './model.js';
import { parseSiteId, splitPem } from './sites.js';

export type RemoteConfigFormat = 'swanctl' | 'aws' | 'pfsense';
export const REMOTE_CONFIG_FORMATS: readonly RemoteConfigFormat[] = ['swanctl', 'aws', 'pfsense'];

/** Our side as the peer sees it. */
export interface OurSide {
  /** The gateway's public host (the endpoint's host): an address or a DNS name. */
  readonly host: string;
}

export function renderRemoteConfig(site: SiteRecord, format: RemoteConfigFormat, ours: OurSide): string {
  switch (format) {
    case 'swanctl':
      return swanctl(site, ours);
    case 'aws':
      return certNote(site) + aws(site, ours);
    case 'pfsense':
      return certNote(site) + pfsense(site, ours);
  }
}

/** AWS and pfSense output is written for PSK sites; a certificate site says so first, never silently. */
function certNote(site: SiteRecord): string {
  if (site.auth !== 'cert') return '';
  return (
    '! This site authenticates with certificates: the pre-shared key fields below do not apply; give the\n' +
    `! firewall a certificate from a CA the site trusts and trust ${issuerOf(site.certificate)}, which issued ours.\n`
  );
}

/** The issuer of our certificate (the CA the far end must trust), or a placeholder. */
function issuerOf(pem: string | null): string {
  const first = pem === null ? undefined : splitPem(pem)[0];
  if (first === undefined) return 'the CA that issued our certificate';
  try {
    return `"${new X509Certificate(first).issuer.replace(/\n/g, ', ')}"`;
  } catch {
    return 'the CA that issued our certificate';
  }
}

/** The subjects of the CAs a certificate site trusts for the peer. */
function trustedSubjects(pem: string | null): string {
  const names = splitPem(pem ?? '').map((c) => {
    try {
      return `"${new X509Certificate(c).subject.replace(/\n/g, ', ')}"`;
    } catch {
      return '(unreadable)';
    }
  });
  return names.length > 0 ? names.join(', ') : '(none)';
}

// ---------------------------------------------------------------------------------------------------------------
// Proposals, transform by transform

interface Parsed {
  readonly text: string;
  readonly encr: Transform[];
  readonly integ: Transform[];
  readonly prf: Transform[];
  readonly dh: Transform[];
  readonly esn: Transform[];
}

function parsed(texts: readonly string[], kind: 'ike' | 'esp'): Parsed[] {
  return texts.flatMap((text) => {
    const p = parseProposal(text, kind);
    if (!p.ok) return [];
    const of = (type: number) => p.value.filter((t) => t.type === type);
    return [
      {
        text,
        encr: of(TRANSFORM_TYPE.ENCR),
        integ: of(TRANSFORM_TYPE.INTEG),
        prf: of(TRANSFORM_TYPE.PRF),
        dh: of(TRANSFORM_TYPE.DH),
        esn: of(TRANSFORM_TYPE.ESN),
      },
    ];
  });
}

const HASH_OF_INTEG: Record<number, string> = {
  [INTEG.HMAC_SHA1_96]: 'SHA1',
  [INTEG.HMAC_SHA2_256_128]: 'SHA256',
  [INTEG.HMAC_SHA2_384_192]: 'SHA384',
  [INTEG.HMAC_SHA2_512_256]: 'SHA512',
};
const HASH_OF_PRF: Record<number, string> = {
  [PRF.HMAC_SHA1]: 'SHA1',
  [PRF.HMAC_SHA2_256]: 'SHA256',
  [PRF.HMAC_SHA2_384]: 'SHA384',
  [PRF.HMAC_SHA2_512]: 'SHA512',
};
const DH_NAME: Record<number, string> = {
  [DH_GROUP.MODP_1024]: 'modp1024',
  [DH_GROUP.MODP_1536]: 'modp1536',
  [DH_GROUP.MODP_2048]: 'modp2048',
  [DH_GROUP.ECP_256]: 'ecp256',
  [DH_GROUP.ECP_384]: 'ecp384',
  [DH_GROUP.ECP_521]: 'ecp521',
  [DH_GROUP.CURVE25519]: 'x25519',
};

function encrName(t: Transform): string {
  if (t.id === ENCR.AES_CBC) return `aes${t.keyLength ?? ''}`;
  if (t.id === ENCR.AES_GCM_16) return `aes${t.keyLength ?? ''}gcm16`;
  if (t.id === ENCR.CHACHA20_POLY1305) return 'chacha20poly1305';
  return `encr${t.id}`;
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}

function isIp(host: string): 4 | 6 | null {
  const a = parseAddress(host);
  return a.ok ? a.value.family : null;
}

/** A value followed by what cannot be carried over, as a list of lines. */
function notes(list: readonly string[]): string[] {
  return list.map((n) => `  ! ${n}`);
}

// ---------------------------------------------------------------------------------------------------------------
// strongSwan (swanctl.conf)

/** strongSwan's identity syntax (swanctl.conf(5) "id"): type prefixes, keyid as "#" and hex. */
function swanId(text: string | null): string | null {
  if (text === null) return null;
  const id = parseSiteId(text);
  if (!id) return null;
  switch (id.type) {
    case 'ipv4':
    case 'ipv6':
      return id.value;
    case 'fqdn':
      return `fqdn:${id.value}`;
    case 'email':
      return `email:${id.value}`;
    case 'keyid':
      return `keyid:#${id.value}`;
    case 'der-asn1-dn':
      return quote(id.value);
  }
}

function quote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function swanctl(site: SiteRecord, ours: OurSide): string {
  const conn = `weft-${site.name}`;
  // Their own ID is the one we expect of them; ours is our localId, or our address.
  const theirId = swanId(site.remoteId) ?? site.remoteAddress;
  const ourId = swanId(site.localId) ?? (isIp(ours.host) ? ours.host : null);
  // What they do mirrors what we do: we wait, so they start; we start (or start on traffic), they answer.
  const start = site.startAction === 'wait' ? 'start' : 'none';
  const dpdAction = site.dpdAction === 'hold' ? 'trap' : site.dpdAction;
  const cert = site.auth === 'cert';
  const auth = cert ? 'pubkey' : 'psk';
  // One child per (their subnet, our subnet) pair of one family when Weft negotiates one CHILD SA per pair.
  const children = site.childPerSubnetPair
    ? site.remoteSubnets.flatMap((theirs) =>
        site.localSubnets.filter((o) => o.includes(':') === theirs.includes(':')).map((o) => [[theirs], [o]]),
      )
    : [[site.remoteSubnets, site.localSubnets]];
  const groups = siteGroupSelectors(site.multicast);
  const child = ([local, remote]: string[][], i: number): string[] => [
    `      ${site.name}${children.length > 1 ? `-${i + 1}` : ''} {`,
    // Multicast group ranges (with IGMP's destinations, for the gateway's queries and the site's reports)
    // are selectors on both sides: their subnets → groups, ours → groups.
    `        local_ts = ${[...local!, ...groups].join(', ')}`,
    `        remote_ts = ${[...remote!, ...groups].join(', ')}`,
    `        esp_proposals = ${site.espProposals.join(', ')}`,
    `        rekey_time = ${site.childLifetimeSec}s`,
    ...(site.childHardLifetimeSec !== null ? [`        life_time = ${site.childHardLifetimeSec}s`] : []),
    ...(site.childRekeyBytes > 0 ? [`        rekey_bytes = ${site.childRekeyBytes}`] : []),
    ...(site.childLifeBytes > 0 ? [`        life_bytes = ${site.childLifeBytes}`] : []),
    `        mode = ${site.mode}`,
    ...(site.dpdIntervalSec > 0 ? [`        dpd_action = ${dpdAction}`] : []),
    `        start_action = ${start}`,
    '      }',
  ];
  const lines = [
    `# strongSwan swanctl.conf for the far end of Weft site "${site.name}".`,
    `# Load with: swanctl --load-all (or put it in /etc/swanctl/conf.d/${conn}.conf).`,
    ...(cert
      ? [
          `# Certificates: /etc/swanctl/x509/${conn}.crt is this box's certificate${theirId !== null ? ` (holding ID ${theirId})` : ''},`,
          `# issued by a CA Weft trusts: ${trustedSubjects(site.caCertificates)};`,
          `# its key goes in /etc/swanctl/private/; /etc/swanctl/x509ca/ must hold ${issuerOf(site.certificate)}`,
          "# (the CA that issued Weft's certificate) and the root above it.",
        ]
      : []),
    ...(site.fragmentSize !== FRAGMENT_SIZE
      ? [`# IKE fragments: in strongswan.conf, charon { fragment_size = ${site.fragmentSize} } as Weft's.`]
      : []),
    'connections {',
    `  ${conn} {`,
    '    version = 2',
    `    local_addrs = ${site.remoteAddress ?? '%any'}`,
    `    remote_addrs = ${ours.host}`,
    `    proposals = ${site.ikeProposals.join(', ')}`,
    `    rekey_time = ${site.ikeLifetimeSec}s`,
    ...(site.ikeHardLifetimeSec !== null
      ? [`    over_time = ${site.ikeHardLifetimeSec - site.ikeLifetimeSec}s`]
      : []),
    ...(site.dpdIntervalSec > 0 ? [`    dpd_delay = ${site.dpdIntervalSec}s`] : []),
    '    local {',
    `      auth = ${auth}`,
    ...(cert ? [`      certs = ${conn}.crt`] : []),
    ...(theirId !== null ? [`      id = ${theirId}`] : []),
    '    }',
    '    remote {',
    `      auth = ${auth}`,
    ...(ourId !== null ? [`      id = ${ourId}`] : []),
    '    }',
    '    children {',
    ...children.flatMap(child),
    '    }',
    '  }',
    '}',
    ...(site.multicast.length > 0
      ? [
          '# Multicast: charon routes the group ranges into ipsec0 (or the XFRM interface); a sender names it',
          '# as its multicast interface (IP_MULTICAST_IF), and a receiver joins the group on it. Weft delivers',
          `# to this site the groups given to it by \`weft multicast static add site:${site.name} GROUP\`,`,
          '# and the groups its hosts join on ipsec0 (Weft queries the site with IGMP and MLD through the',
          '# CHILD SA; give ipsec0 an address in the local subnet so that IGMP reports leave from it; MLD',
          '# leaves from its link-local address, in fe80::/64 of the selectors).',
        ]
      : []),
    ...(cert
      ? []
      : [
          'secrets {',
          `  ike-${site.name} {`,
          ...[theirId, ourId].flatMap((id, i) => (id === null ? [] : [`    id-${i + 1} = ${id}`])),
          `    secret = ${quote(site.psk)}`,
          '  }',
          '}',
        ]),
    '',
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// AWS Site-to-Site VPN

const AWS_ENCR: Record<string, string> = {
  aes128: 'AES128',
  aes256: 'AES256',
  aes128gcm16: 'AES128-GCM-16',
  aes256gcm16: 'AES256-GCM-16',
};
const AWS_INTEG: Record<string, string> = {
  SHA1: 'SHA1',
  SHA256: 'SHA2-256',
  SHA384: 'SHA2-384',
  SHA512: 'SHA2-512',
};
/** AWS's Phase 1 and Phase 2 DH group numbers (tunnel options). */
const AWS_DH_PHASE1 = new Set([2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
const AWS_DH_PHASE2 = new Set([2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
const AWS_LIFETIME = { phase1: { min: 900, max: 28_800 }, phase2: { min: 900, max: 3_600 } };
/** AWS's pre-shared key rules: 8-64 letters, digits, "." and "_", not starting with "0". */
const AWS_PSK = /^[A-Za-z1-9._][A-Za-z0-9._]{7,63}$/;

interface Mapped {
  readonly values: string[];
  readonly missing: string[];
}

function mapEach(
  items: readonly { text: string; names: readonly string[] }[],
  table: (name: string) => string | undefined,
  what: string,
  vendor: string,
): Mapped {
  const values: string[] = [];
  const missing: string[] = [];
  for (const { text, names } of items) {
    for (const n of names) {
      const m = table(n);
      if (m === undefined) missing.push(`${n} (in "${text}") has no ${what} equivalent on ${vendor}`);
      else values.push(m);
    }
  }
  return { values: unique(values), missing: unique(missing) };
}

function aws(site: SiteRecord, ours: OurSide): string {
  const ike = parsed(site.ikeProposals, 'ike');
  const esp = parsed(site.espProposals, 'esp');
  const encr = (list: Parsed[]) =>
    mapEach(
      list.map((p) => ({ text: p.text, names: p.encr.map(encrName) })),
      (n) => AWS_ENCR[n],
      'encryption',
      'AWS',
    );
  // An AEAD IKE proposal has no integrity transform: AWS pairs its PRF with the integrity algorithm chosen,
  // so the PRF's hash goes in the integrity list.
  const ikeInteg = mapEach(
    ike.map((p) => ({
      text: p.text,
      names: (p.integ.length > 0
        ? p.integ.map((t) => HASH_OF_INTEG[t.id])
        : p.prf.map((t) => HASH_OF_PRF[t.id])
      ).map((h) => h ?? '?'),
    })),
    (n) => AWS_INTEG[n],
    'integrity',
    'AWS',
  );
  const espInteg = mapEach(
    esp.map((p) => ({ text: p.text, names: p.integ.map((t) => HASH_OF_INTEG[t.id] ?? '?') })),
    (n) => AWS_INTEG[n],
    'integrity',
    'AWS',
  );
  const dh = (list: Parsed[], allowed: Set<number>) =>
    mapEach(
      list.map((p) => ({ text: p.text, names: p.dh.map((t) => String(t.id)) })),
      (n) => (allowed.has(Number(n)) ? n : undefined),
      'DH group',
      'AWS',
    );
  const p1Encr = encr(ike);
  const p2Encr = encr(esp);
  const p1Dh = dh(ike, AWS_DH_PHASE1);
  const p2Dh = dh(esp, AWS_DH_PHASE2);
  const espWithoutDh = esp.some((p) => p.dh.length === 0);
  const esnOnly = esp.filter((p) => p.esn.length > 0 && p.esn.every((t) => t.id === ESN.EXTENDED));
  const dhName = (n: string) => `${n} (${DH_NAME[Number(n)] ?? `group ${n}`})`;
  const lifetime = (value: number, bounds: { min: number; max: number }): [string, string[]] => {
    const clamped = Math.min(bounds.max, Math.max(bounds.min, value));
    return [
      String(clamped),
      clamped === value
        ? []
        : [`ours is ${value} s; AWS takes ${bounds.min}-${bounds.max} s, so ${clamped} is the nearest`],
    ];
  };
  const [p1Life, p1LifeNotes] = lifetime(site.ikeLifetimeSec, AWS_LIFETIME.phase1);
  const [p2Life, p2LifeNotes] = lifetime(site.childLifetimeSec, AWS_LIFETIME.phase2);
  const v4 = (list: readonly string[]) => list.filter((p) => !p.includes(':'));
  const single = (list: readonly string[]) => (list.length === 1 ? list[0]! : '0.0.0.0/0');
  const dpdAction = { restart: 'Restart', clear: 'Clear', hold: 'None' }[site.dpdAction];
  const lines = [
    `# AWS Site-to-Site VPN settings for Weft site "${site.name}".`,
    '# VPC console > Site-to-Site VPN connections > Create (or Modify VPN tunnel options).',
    '',
    'Customer gateway',
    `  IP address: ${ours.host}`,
    ...notes(isIp(ours.host) === 4 ? [] : ["AWS needs the gateway's public IPv4 address here, not a name"]),
    '  BGP ASN: 65000 (any private ASN; not used with static routing)',
    '',
    'VPN connection',
    '  Routing options: Static',
    `  Static IP prefixes: ${v4(site.localSubnets).join(', ') || '(none: AWS static routes are IPv4)'}`,
    `  Local IPv4 network CIDR: ${single(v4(site.localSubnets))}`,
    `  Remote IPv4 network CIDR: ${single(v4(site.remoteSubnets))}`,
    ...notes(
      v4(site.localSubnets).length > 1 || v4(site.remoteSubnets).length > 1
        ? ['AWS takes one CIDR per side: 0.0.0.0/0 lets AWS narrow to the subnets Weft proposes']
        : [],
    ),
    '',
    `Tunnel options (tunnel 1; its outside IP address is this site's remote address, ${site.remoteAddress ?? '%any'})`,
    `  Pre-shared key: ${site.psk}`,
    ...notes(
      AWS_PSK.test(site.psk)
        ? []
        : [
            'AWS accepts 8-64 letters, digits, "." and "_", not starting with 0: set such a key on both sides ' +
              `(weft site set ${site.name} --psk KEY)`,
          ],
    ),
    `  Phase 1 encryption algorithms: ${p1Encr.values.join(', ') || '(none)'}`,
    ...notes(p1Encr.missing),
    `  Phase 1 integrity algorithms: ${ikeInteg.values.join(', ') || '(none)'}`,
    ...notes(ikeInteg.missing),
    `  Phase 1 DH group numbers: ${p1Dh.values.map(dhName).join(', ') || '(none)'}`,
    ...notes(p1Dh.missing),
    `  Phase 2 encryption algorithms: ${p2Encr.values.join(', ') || '(none)'}`,
    ...notes(p2Encr.missing),
    `  Phase 2 integrity algorithms: ${espInteg.values.join(', ') || '(none needed: AES-GCM carries its own)'}`,
    ...notes(espInteg.missing),
    `  Phase 2 DH group numbers: ${p2Dh.values.map(dhName).join(', ') || '(none)'}`,
    ...notes([
      ...p2Dh.missing,
      ...(espWithoutDh
        ? [
            'an ESP proposal without a DH group means no PFS when CHILD SAs are rekeyed; AWS uses PFS, so add ' +
              'a group both sides list to the ESP proposals (e.g. aes256gcm16-modp2048)',
          ]
        : []),
      ...esnOnly.map((p) => `"${p.text}" requires extended sequence numbers, which AWS does not list`),
    ]),
    '  IKE version: ikev2',
    `  Phase 1 lifetime (seconds): ${p1Life}`,
    ...notes(p1LifeNotes),
    `  Phase 2 lifetime (seconds): ${p2Life}`,
    ...notes(p2LifeNotes),
    `  DPD timeout (seconds): ${Math.max(30, site.dpdIntervalSec * 3)}`,
    ...notes(
      site.dpdIntervalSec === 0 ? ['Weft does not check liveness on this site (dpdIntervalSec 0)'] : [],
    ),
    `  DPD timeout action: ${dpdAction}`,
    `  Startup action: ${site.startAction === 'wait' ? 'Start' : 'Add'}`,
    ...notes(
      site.remoteAddress === null
        ? ["this site has no remote address (%any): give it the tunnel's outside IP address to initiate"]
        : [],
    ),
    '',
    '# AWS makes two tunnels per connection: add a second Weft site for tunnel 2 (its own outside IP and key).',
    '',
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// pfSense

/** pfSense names AES-GCM by its ICV ("AES128-GCM" = 128-bit ICV); the key length is a separate field. */
function pfsenseEncr(t: Transform): string | undefined {
  if (t.id === ENCR.AES_CBC) return `AES, Key length ${t.keyLength} bits`;
  if (t.id === ENCR.AES_GCM_16) return `AES128-GCM (16-octet ICV), Key length ${t.keyLength} bits`;
  if (t.id === ENCR.CHACHA20_POLY1305) return 'CHACHA20-POLY1305';
  return undefined;
}

const PFSENSE_DH: Record<number, string> = {
  [DH_GROUP.MODP_1024]: '2 (1024 bit)',
  [DH_GROUP.MODP_1536]: '5 (1536 bit)',
  [DH_GROUP.MODP_2048]: '14 (2048 bit)',
  [DH_GROUP.ECP_256]: '19 (nist ecp256)',
  [DH_GROUP.ECP_384]: '20 (nist ecp384)',
  [DH_GROUP.ECP_521]: '21 (nist ecp521)',
  [DH_GROUP.CURVE25519]: '31 (Elliptic Curve 25519, 256 bit)',
};

/** pfSense's identifier choices for an ID of ours ("My identifier" / "Peer identifier"). */
function pfsenseId(text: string | null, addressChoice: string): { value: string; note: string | null } {
  if (text === null) return { value: addressChoice, note: null };
  const id = parseSiteId(text);
  if (!id) return { value: addressChoice, note: null };
  switch (id.type) {
    case 'der-asn1-dn':
      return { value: `ASN.1 distinguished Name: ${id.value}`, note: null };
    case 'ipv4':
    case 'ipv6':
      return { value: `IP address: ${id.value}`, note: null };
    case 'fqdn':
      return { value: `Distinguished name: ${id.value}`, note: null };
    case 'email':
      return { value: `User distinguished name: ${id.value}`, note: null };
    case 'keyid': {
      const bytes = Buffer.from(id.value, 'hex');
      const printable = /^[\x21-\x7e]+$/.test(bytes.toString('latin1'));
      return printable
        ? { value: `KeyID tag: ${bytes.toString('latin1')}`, note: null }
        : {
            value: 'KeyID tag: (no equivalent)',
            note: `pfSense's KeyID tag is text; key id ${id.value} is not printable`,
          };
    }
  }
}

function pfsense(site: SiteRecord, ours: OurSide): string {
  const ike = parsed(site.ikeProposals, 'ike');
  const esp = parsed(site.espProposals, 'esp');
  const missing: string[] = [];
  const p1Rows: string[] = [];
  for (const p of ike) {
    for (const e of p.encr) {
      const enc = pfsenseEncr(e);
      if (!enc) {
        missing.push(`${encrName(e)} (in "${p.text}") has no pfSense equivalent`);
        continue;
      }
      const hashes =
        p.integ.length > 0 ? p.integ.map((t) => HASH_OF_INTEG[t.id]) : p.prf.map((t) => HASH_OF_PRF[t.id]);
      for (const d of p.dh) {
        const group = PFSENSE_DH[d.id];
        if (!group) {
          missing.push(`DH group ${d.id} (in "${p.text}") has no pfSense equivalent`);
          continue;
        }
        for (const h of hashes) p1Rows.push(`    Algorithm: ${enc}; Hash: ${h ?? '?'}; DH Group: ${group}`);
      }
    }
  }
  const p2Encr: string[] = [];
  const p2Hash: string[] = [];
  const pfs: string[] = [];
  for (const p of esp) {
    for (const e of p.encr) {
      const enc = pfsenseEncr(e);
      if (enc) p2Encr.push(enc);
      else missing.push(`${encrName(e)} (in "${p.text}") has no pfSense equivalent`);
    }
    for (const t of p.integ) p2Hash.push(HASH_OF_INTEG[t.id] ?? '?');
    for (const d of p.dh) {
      const group = PFSENSE_DH[d.id];
      if (group) pfs.push(group);
      else missing.push(`DH group ${d.id} (in "${p.text}") has no pfSense equivalent`);
    }
    if (p.esn.length > 0 && p.esn.every((t) => t.id === ESN.EXTENDED))
      missing.push(`"${p.text}" requires extended sequence numbers, which pfSense's GUI does not offer`);
  }
  const family = isIp(ours.host) === 6 ? 'IPv6' : 'IPv4';
  // Their identifier is the ID we expect of them; the peer's (ours) is our localId or our address.
  const my = pfsenseId(site.remoteId, 'My IP address');
  const peer = pfsenseId(site.localId, 'Peer IP address');
  const hostBits = (p: string) => p.endsWith('/32') || p.endsWith('/128');
  const network = (p: string) => (hostBits(p) ? `Address ${p.replace(/\/\d+$/, '')}` : `Network ${p}`);
  const p2Entries: string[] = [];
  for (const theirs of site.remoteSubnets) {
    for (const oursNet of site.localSubnets) {
      if (theirs.includes(':') !== oursNet.includes(':')) continue;
      const mode =
        site.mode === 'transport' ? 'Transport' : theirs.includes(':') ? 'Tunnel IPv6' : 'Tunnel IPv4';
      p2Entries.push(
        `  Phase 2 entry: ${theirs} <-> ${oursNet}`,
        `    Mode: ${mode}`,
        ...(site.mode === 'transport'
          ? []
          : [`    Local Network: ${network(theirs)}`, `    Remote Network: ${network(oursNet)}`]),
        '    Protocol: ESP',
        `    Encryption Algorithms: ${unique(p2Encr).join(' | ') || '(none)'}`,
        `    Hash Algorithms: ${unique(p2Hash).join(', ') || '(none: AES-GCM and ChaCha20-Poly1305 carry their own)'}`,
        `    PFS key group: ${unique(pfs).join(', ') || 'off'}`,
        ...(site.childHardLifetimeSec !== null ? [`    Rekey Time: ${site.childLifetimeSec}`] : []),
        `    Life Time: ${site.childHardLifetimeSec ?? site.childLifetimeSec}`,
        '',
      );
    }
  }
  const childStart = site.startAction === 'wait' ? 'Initiate at start (Start)' : 'None (Responder Only)';
  const closeAction = {
    restart: 'Restart/Reconnect',
    clear: 'Close connection and clear SA',
    hold: 'Leave unchanged',
  }[site.dpdAction];
  const lines = [
    `# pfSense settings for Weft site "${site.name}" (VPN > IPsec > Tunnels).`,
    '',
    'Phase 1',
    '  Key Exchange version: IKEv2',
    `  Internet Protocol: ${family}`,
    '  Interface: WAN',
    `  Remote Gateway: ${ours.host}`,
    `  Description: weft-${site.name}`,
    '  Authentication Method: Mutual PSK',
    `  My identifier: ${my.value}`,
    `  Peer identifier: ${peer.value}`,
    `  Pre-Shared Key: ${site.psk}`,
    '  Encryption Algorithm (one row each, in this order):',
    ...(p1Rows.length > 0 ? p1Rows : ['    (none)']),
    `  Rekey Time: ${site.ikeLifetimeSec}`,
    `  Life Time: ${site.ikeHardLifetimeSec ?? Math.round(site.ikeLifetimeSec * 1.1)}`,
    ...(site.childPerSubnetPair
      ? ['  Split connections: Enable (one CHILD SA per phase 2 entry, as Weft)']
      : []),
    `  Child SA Start Action: ${childStart}`,
    `  Child SA Close Action: ${closeAction}`,
    '  NAT Traversal: Auto',
    '  MOBIKE: Disable',
    `  Dead Peer Detection: ${site.dpdIntervalSec > 0 ? `Enable DPD, Delay ${site.dpdIntervalSec}, Max failures 5` : 'off'}`,
    ...notes([my.note, peer.note].filter((n): n is string => n !== null)),
    '',
    ...p2Entries,
    ...(missing.length > 0 ? ['Not carried over', ...notes(unique(missing)), ''] : []),
  ];
  return lines.join('\n');
}
