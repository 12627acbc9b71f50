/**
 * A member's OpenVPN profile: one inline `.ovpn` file that openvpn 2.5+ (and the Windows GUI, Tunnelblick,
 * OpenVPN Connect) read as it is. Everything the client needs is inside: the CA, the member's certificate and
 * key, and its tls-crypt-v2 client key, so there is nothing else to copy.
 *
 * Choices, and why:
 *   - `remote HOST PORT udp` first, then `remote HOST PORT tcp-client`: openvpn tries the remotes in order,
 *     so a network that blocks UDP falls back to TCP (443 by default, which passes most firewalls).
 *   - Several gateways on one store (docs/scale-out.md): one `remote` per host — the endpoint of the settings
 *     (a failover pair's shared address) first, then each gateway's own — all UDP ones before the TCP ones, and
 *     `server-poll-timeout` short: openvpn moves to the next remote after that long without an answer (its
 *     default, 120 s, would hold a member on a dead gateway for two minutes). After a `ping-restart` openvpn
 *     goes on down the list, so a member of a dead gateway reaches another in seconds.
 *   - `remote-cert-tls server` and `verify-x509-name CN name`: only the gateway's certificate (serverAuth EKU,
 *     our CA, its CN) is accepted, never another member's certificate from the same CA.
 *   - `data-ciphers`: the gateway's list; the client picks the first it has (OpenVPN 2.5 NCP).
 *   - No `cipher`/`auth`: AEAD ciphers carry their own authentication and tls-crypt-v2 fixes its own.
 *   - `reneg-sec 0` on the client: the server decides when to renegotiate (its reneg-sec); the client's
 *     default of an hour would otherwise renegotiate on its own schedule too.
 */

export interface ProfileInput {
  /** The member (for the header comment; profiles carry no other identity in clear text). */
  readonly memberName: string;
  /**
   * What clients dial, in order: the host of the gateway's endpoint, then (several gateways on one store) each
   * other gateway's host. At least one; duplicates are dialled once.
   */
  readonly hosts: readonly string[];
  readonly udpPort: number | null;
  readonly tcpPort: number | null;
  readonly serverName: string;
  readonly dataCiphers: readonly string[];
  readonly ca: string;
  readonly certificate: string;
  readonly privateKey: string;
  readonly tlsCryptV2Key: string;
}

/** A PEM block for an inline <tag>: trimmed, then one newline, so the closing tag is on its own line. */
function inline(tag: string, pem: string): string[] {
  return [`<${tag}>`, pem.trim(), `</${tag}>`];
}

/** Host names and addresses need no quoting in openvpn's config; anything else is refused by the caller. */
function remoteHost(host: string): string {
  // An IPv6 literal comes as "[2001:db8::1]" from the endpoint setting; openvpn wants it bare.
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * Seconds openvpn waits for an answer from one remote before it tries the next, when the profile lists several
 * gateways: long enough for a TLS handshake with a loaded gateway, short enough that a dead one costs little.
 */
export const SERVER_POLL_TIMEOUT_SECONDS = 5;

/** The profile text. Throws RangeError when both listeners are off (there would be nothing to dial). */
export function renderOpenVpnProfile(p: ProfileInput): string {
  if (p.udpPort === null && p.tcpPort === null)
    throw new RangeError('OpenVPN has neither a UDP nor a TCP port configured');
  const hosts = [...new Set(p.hosts.map(remoteHost))];
  if (hosts.length === 0) throw new RangeError('OpenVPN profile: no host to dial');
  const { udpPort, tcpPort } = p;
  const lines = [
    `# Weft member ${p.memberName}: OpenVPN profile (openvpn 2.5 or later)`,
    'client',
    'dev tun',
    ...(udpPort !== null ? hosts.map((h) => `remote ${h} ${udpPort} udp`) : []),
    ...(tcpPort !== null ? hosts.map((h) => `remote ${h} ${tcpPort} tcp-client`) : []),
    ...(hosts.length > 1 ? [`server-poll-timeout ${SERVER_POLL_TIMEOUT_SECONDS}`] : []),
    'resolv-retry infinite',
    'nobind',
    'persist-key',
    'persist-tun',
    'remote-cert-tls server',
    `verify-x509-name ${p.serverName} name`,
    `data-ciphers ${p.dataCiphers.join(':')}`,
    'reneg-sec 0',
    'verb 3',
    ...inline('ca', p.ca),
    ...inline('cert', p.certificate),
    ...inline('key', p.privateKey),
    ...inline('tls-crypt-v2', p.tlsCryptV2Key),
    '',
  ];
  return lines.join('\n');
}

/**
 * The non-secret content of a profile, for the stale-config fingerprint: the same lines, with the key and the
 * tls-crypt-v2 client key replaced by the certificate serial and client key id that identify them.
 */
export function openVpnProfileFingerprintText(
  p: Omit<ProfileInput, 'privateKey' | 'tlsCryptV2Key'> & { serial: string; clientKeyId: string },
): string {
  return renderOpenVpnProfile({
    ...p,
    privateKey: `serial ${p.serial}`,
    tlsCryptV2Key: `client key ${p.clientKeyId}`,
  });
}
