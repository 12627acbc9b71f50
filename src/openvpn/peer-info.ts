/**
 * Peer info (OpenVPN's ssl.c push_peer_info; openvpn-rfc §"Peer info"): the client's last key-method 2
 * string, `NAME=value` lines separated by '\n', telling the server what the client is and can do. Parsed
 * here into a typed record, and the data cipher chosen from it (ssl_ncp.c ncp_get_best_cipher: the first
 * cipher of the server's list that the client offers).
 */

/** ssl.h: the bits of IV_PROTO. */
export const IV_PROTO_DATA_V2 = 1 << 1;
export const IV_PROTO_REQUEST_PUSH = 1 << 2;
export const IV_PROTO_TLS_KEY_EXPORT = 1 << 3;
export const IV_PROTO_AUTH_PENDING_KW = 1 << 4;
export const IV_PROTO_NCP_P2P = 1 << 5;
export const IV_PROTO_DNS_OPTION = 1 << 6;
export const IV_PROTO_CC_EXIT_NOTIFY = 1 << 7;
export const IV_PROTO_AUTH_FAIL_TEMP = 1 << 8;
export const IV_PROTO_DYN_TLS_CRYPT = 1 << 9;
export const IV_PROTO_DATA_EPOCH = 1 << 10;

/** Of this implementation: peer info longer than this, or with more lines, is refused. */
export const PEER_INFO_MAX_LENGTH = 8192;
export const PEER_INFO_MAX_ENTRIES = 256;

/** The data ciphers Weft offers, in the order it prefers them (the server's --data-ciphers). */
export const DEFAULT_DATA_CIPHERS = ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305'] as const;
export type DataCipher = (typeof DEFAULT_DATA_CIPHERS)[number];

export interface PeerInfo {
  /** IV_VER, e.g. "2.6.3". */
  readonly version: string | undefined;
  /** IV_PLAT: linux, win, mac, android, … */
  readonly platform: string | undefined;
  /** IV_PROTO as a bit field (0 when absent). */
  readonly proto: number;
  /** IV_CIPHERS split on ':' (empty when absent). */
  readonly ciphers: readonly string[];
  /** IV_NCP (2.4 clients announce AES-256-GCM and AES-128-GCM with IV_NCP=2). */
  readonly ncp: number | undefined;
  /** IV_MTU: the largest tun-mtu the client could take. */
  readonly mtu: number | undefined;
  /** IV_TCPNL=1: the client splits TCP control messages on newlines. */
  readonly tcpnl: boolean;
  /** IV_GUI_VER, IV_SSO, UV_* and everything else, in arrival order. */
  readonly other: ReadonlyArray<readonly [string, string]>;
}

export type PeerInfoDropReason = 'peer-info-too-long' | 'peer-info-too-many-entries' | 'peer-info-bad-number';

const NUMBER = /^[0-9]{1,9}$/;

/** Parses peer info. Lines without '=' are skipped, as OpenVPN does; numbers must be decimal. */
export function parsePeerInfo(
  text: string,
): { ok: true; info: PeerInfo } | { ok: false; drop: PeerInfoDropReason } {
  if (text.length > PEER_INFO_MAX_LENGTH) return { ok: false, drop: 'peer-info-too-long' };
  const lines = text.split('\n');
  if (lines.length > PEER_INFO_MAX_ENTRIES + 1) return { ok: false, drop: 'peer-info-too-many-entries' };
  let version: string | undefined;
  let platform: string | undefined;
  let proto = 0;
  let ciphers: string[] = [];
  let ncp: number | undefined;
  let mtu: number | undefined;
  let tcpnl = false;
  const other: Array<readonly [string, string]> = [];
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const name = line.slice(0, eq);
    const value = line.slice(eq + 1);
    const num = (): number | undefined => (NUMBER.test(value) ? Number(value) : undefined);
    switch (name) {
      case 'IV_VER':
        version = value;
        break;
      case 'IV_PLAT':
        platform = value;
        break;
      case 'IV_PROTO': {
        const n = num();
        if (n === undefined) return { ok: false, drop: 'peer-info-bad-number' };
        proto = n;
        break;
      }
      case 'IV_CIPHERS':
        ciphers = value.split(':').filter((c) => c.length > 0);
        break;
      case 'IV_NCP': {
        ncp = num();
        if (ncp === undefined) return { ok: false, drop: 'peer-info-bad-number' };
        break;
      }
      case 'IV_MTU': {
        mtu = num();
        if (mtu === undefined) return { ok: false, drop: 'peer-info-bad-number' };
        break;
      }
      case 'IV_TCPNL':
        tcpnl = value === '1';
        break;
      default:
        other.push([name, value]);
    }
  }
  return { ok: true, info: { version, platform, proto, ciphers, ncp, mtu, tcpnl, other } };
}

export function hasProto(info: PeerInfo, bit: number): boolean {
  return (info.proto & bit) !== 0;
}

/** What the client offers: IV_CIPHERS, or for a 2.4 client with IV_NCP ≥ 2 the two GCM ciphers (ssl_ncp.c). */
export function offeredCiphers(info: PeerInfo): readonly string[] {
  if (info.ciphers.length > 0) return info.ciphers;
  if (info.ncp !== undefined && info.ncp >= 2) return ['AES-256-GCM', 'AES-128-GCM'];
  return [];
}

export type CipherChoice =
  | { readonly ok: true; readonly cipher: DataCipher }
  /** Sent to the client as AUTH_FAILED; `reason` is for the log. */
  | { readonly ok: false; readonly reason: string };

/** The first cipher of `serverCiphers` the client offers (names compared case-insensitively). */
export function chooseCipher(
  info: PeerInfo,
  serverCiphers: readonly DataCipher[] = DEFAULT_DATA_CIPHERS,
): CipherChoice {
  const offered = new Set(offeredCiphers(info).map((c) => c.toUpperCase()));
  for (const cipher of serverCiphers) if (offered.has(cipher)) return { ok: true, cipher };
  const list = offeredCiphers(info).join(':') || '(none)';
  return {
    ok: false,
    reason: `no common data cipher: client offers ${list.slice(0, 200)}, server allows ${serverCiphers.join(':')}`,
  };
}
