/**
 * tls-crypt-v2 (OpenVPN 2.5+, tls_crypt.c; openvpn-rfc §"tls-crypt-v2"): every client has a tls-crypt key
 * of its own, Kc, and carries it to the server wrapped with a key only the server holds, so the server keeps
 * no list of client keys and can still drop a stranger's packets before any TLS.
 *
 *   server key   one struct key: 64 cipher bytes ‖ 64 HMAC bytes  (Ke = first 32 cipher, Ka = first 32 HMAC)
 *   client key   Kc (256 bytes, a tls-crypt static key) ‖ WKc, PEM "OpenVPN tls-crypt-v2 client key"
 *   WKc          T ‖ AES-256-CTR(Ke, IV = T[0..16], Kc ‖ metadata) ‖ len
 *                with len = |WKc| as u16 big-endian and T = HMAC-SHA256(Ka, len ‖ Kc ‖ metadata)
 *   metadata     type(1) ‖ data: 0x00 user data, 0x01 a 64-bit big-endian Unix time of creation
 *
 * The client sends P_CONTROL_HARD_RESET_CLIENT_V3: a tls-crypt packet wrapped with Kc (client direction),
 * then WKc. The server takes WKc from the end (its last two bytes give its length), unwraps Kc with the
 * server key, and unwraps the rest with Kc (server direction). P_CONTROL_WKC_V1 is the same arrangement for
 * a client's later control packet, sent when the server asked it to (EARLY_NEG_FLAG_RESEND_WKC).
 */
import { createCipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import {
  AES_256_KEY_LENGTH,
  HMAC_SHA256_KEY_LENGTH,
  KEY_HALF_LENGTH,
  TLS_CRYPT_IV_LENGTH,
  TLS_CRYPT_METADATA_TYPE_TIMESTAMP,
  TLS_CRYPT_METADATA_TYPE_USER,
  TLS_CRYPT_OFF_CT,
  TLS_CRYPT_TAG_LENGTH,
  TLS_CRYPT_V2_CLIENT_KEY_LENGTH,
  TLS_CRYPT_V2_CLIENT_PEM_NAME,
  TLS_CRYPT_V2_MAX_METADATA_LENGTH,
  TLS_CRYPT_V2_MAX_WKC_LENGTH,
  TLS_CRYPT_V2_MIN_WKC_LENGTH,
  TLS_CRYPT_V2_SERVER_KEY_LENGTH,
  TLS_CRYPT_V2_SERVER_PEM_NAME,
} from './constants.js';
import { carriesWkc, parseHeaderByte, type AckPacket, type ControlPacket } from './packet.js';
import {
  StaticKey,
  TlsCryptKeys,
  tlsCryptUnwrap,
  tlsCryptWrap,
  type TlsCryptDropReason,
  type WrapId,
} from './tls-crypt.js';
import type { ReplayWindow } from './replay.js';

// ---------------------------------------------------------------------------------------------------------
// PEM armour (OpenSSL's PEM_write_bio: base64 in lines of 64 characters)

export type PemError = 'missing-begin' | 'missing-end' | 'bad-base64';

function pemDecode(
  text: string,
  name: string,
): { ok: true; bytes: Uint8Array } | { ok: false; error: PemError } {
  const beginLine = `-----BEGIN ${name}-----`;
  const endLine = `-----END ${name}-----`;
  const begin = text.indexOf(beginLine);
  if (begin < 0) return { ok: false, error: 'missing-begin' };
  const start = begin + beginLine.length;
  const end = text.indexOf(endLine, start);
  if (end < 0) return { ok: false, error: 'missing-end' };
  const body = text.slice(start, end).replace(/\s+/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(body))
    return { ok: false, error: 'bad-base64' };
  return { ok: true, bytes: new Uint8Array(Buffer.from(body, 'base64')) };
}

function pemEncode(bytes: Uint8Array, name: string): string {
  const b64 = Buffer.from(bytes).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${name}-----\n${lines.join('\n')}\n-----END ${name}-----\n`;
}

// ---------------------------------------------------------------------------------------------------------
// Server key

/** The tls-crypt-v2 server key (128 bytes); never printed. */
export class TlsCryptV2ServerKey {
  private constructor(private readonly bytes: Uint8Array) {}

  static fromBytes(bytes: Uint8Array): TlsCryptV2ServerKey {
    if (bytes.length !== TLS_CRYPT_V2_SERVER_KEY_LENGTH)
      throw new RangeError(`a tls-crypt-v2 server key is ${TLS_CRYPT_V2_SERVER_KEY_LENGTH} bytes`);
    return new TlsCryptV2ServerKey(Uint8Array.from(bytes));
  }

  /** What `openvpn --genkey tls-crypt-v2-server` makes: 128 random bytes. */
  static generate(random: (n: number) => Uint8Array = randomBytes): TlsCryptV2ServerKey {
    return TlsCryptV2ServerKey.fromBytes(random(TLS_CRYPT_V2_SERVER_KEY_LENGTH));
  }

  /** Ke: the AES-256-CTR key. */
  get cipherKey(): Uint8Array {
    return this.bytes.subarray(0, AES_256_KEY_LENGTH);
  }

  /** Ka: the HMAC-SHA256 key. */
  get hmacKey(): Uint8Array {
    return this.bytes.subarray(KEY_HALF_LENGTH, KEY_HALF_LENGTH + HMAC_SHA256_KEY_LENGTH);
  }

  /** The key file, as `openvpn --genkey tls-crypt-v2-server` writes it. */
  toPem(): string {
    return pemEncode(this.bytes, TLS_CRYPT_V2_SERVER_PEM_NAME);
  }

  toJSON(): string {
    return '(redacted)';
  }
  toString(): string {
    return '(redacted)';
  }
  [inspect.custom](): string {
    return 'TlsCryptV2ServerKey(redacted)';
  }
}

export type KeyFileError = PemError | 'wrong-length';

export function parseServerKey(
  text: string,
): { ok: true; key: TlsCryptV2ServerKey } | { ok: false; error: KeyFileError } {
  const pem = pemDecode(text, TLS_CRYPT_V2_SERVER_PEM_NAME);
  if (!pem.ok) return pem;
  if (pem.bytes.length !== TLS_CRYPT_V2_SERVER_KEY_LENGTH) return { ok: false, error: 'wrong-length' };
  return { ok: true, key: TlsCryptV2ServerKey.fromBytes(pem.bytes) };
}

// ---------------------------------------------------------------------------------------------------------
// Metadata

export type Metadata =
  /** `--genkey tls-crypt-v2-client FILE BASE64`: the decoded bytes. Weft puts its member id here. */
  | { readonly type: 'user'; readonly data: Uint8Array }
  /** `--genkey tls-crypt-v2-client FILE` without metadata: the time of creation (Unix seconds). */
  | { readonly type: 'timestamp'; readonly seconds: bigint }
  /** A type byte this implementation does not know, or a timestamp of the wrong length. */
  | { readonly type: 'unknown'; readonly typeByte: number; readonly data: Uint8Array }
  /** No metadata at all (openvpn never writes such a key, but WKc allows it). */
  | { readonly type: 'none' };

export function encodeMetadata(metadata: Metadata): Uint8Array {
  switch (metadata.type) {
    case 'user':
      return Uint8Array.of(TLS_CRYPT_METADATA_TYPE_USER, ...metadata.data);
    case 'timestamp': {
      const out = new Uint8Array(9);
      out[0] = TLS_CRYPT_METADATA_TYPE_TIMESTAMP;
      new DataView(out.buffer).setBigUint64(1, BigInt.asUintN(64, metadata.seconds));
      return out;
    }
    case 'unknown':
      return Uint8Array.of(metadata.typeByte, ...metadata.data);
    case 'none':
      return new Uint8Array(0);
  }
}

export function decodeMetadata(bytes: Uint8Array): Metadata {
  if (bytes.length === 0) return { type: 'none' };
  const typeByte = bytes[0]!;
  const data = bytes.slice(1);
  if (typeByte === TLS_CRYPT_METADATA_TYPE_USER) return { type: 'user', data };
  if (typeByte === TLS_CRYPT_METADATA_TYPE_TIMESTAMP && data.length === 8) {
    return { type: 'timestamp', seconds: new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0) };
  }
  return { type: 'unknown', typeByte, data };
}

// ---------------------------------------------------------------------------------------------------------
// WKc

/** Wraps Kc and its metadata with the server key. Throws on a caller's mistake (metadata too long). */
export function wrapClientKey(
  server: TlsCryptV2ServerKey,
  clientKey: StaticKey,
  metadata: Uint8Array,
): Uint8Array {
  if (metadata.length > TLS_CRYPT_V2_MAX_METADATA_LENGTH)
    throw new RangeError(`metadata is at most ${TLS_CRYPT_V2_MAX_METADATA_LENGTH} bytes`);
  const kc = clientKey.exportBytes();
  const total = TLS_CRYPT_V2_MIN_WKC_LENGTH + metadata.length;
  const len = Uint8Array.of(total >>> 8, total & 0xff);
  const tag = createHmac('sha256', server.hmacKey).update(len).update(kc).update(metadata).digest();
  const cipher = createCipheriv('aes-256-ctr', server.cipherKey, tag.subarray(0, TLS_CRYPT_IV_LENGTH));
  const encrypted = Buffer.concat([cipher.update(kc), cipher.update(metadata), cipher.final()]);
  const out = new Uint8Array(total);
  out.set(tag, 0);
  out.set(encrypted, TLS_CRYPT_TAG_LENGTH);
  out.set(len, total - 2);
  kc.fill(0);
  return out;
}

export type WkcDropReason =
  /** Too short to hold the length field, or the length points outside the packet. */
  | 'wkc-truncated'
  /** A length outside TLS_CRYPT_V2_MIN_WKC_LENGTH..TLS_CRYPT_V2_MAX_WKC_LENGTH, or not WKc's own length. */
  | 'wkc-bad-length'
  /** Not wrapped with our server key (or tampered with). */
  | 'wkc-authentication-failed';

export interface UnwrappedClientKey {
  readonly clientKey: StaticKey;
  /** The raw metadata bytes (type byte first); decodeMetadata() reads them. */
  readonly metadata: Uint8Array;
}

export function unwrapClientKey(
  server: TlsCryptV2ServerKey,
  wkc: Uint8Array,
): ({ ok: true } & UnwrappedClientKey) | { ok: false; drop: WkcDropReason } {
  if (wkc.length < TLS_CRYPT_V2_MIN_WKC_LENGTH || wkc.length > TLS_CRYPT_V2_MAX_WKC_LENGTH)
    return { ok: false, drop: 'wkc-bad-length' };
  const len = wkc.subarray(wkc.length - 2);
  if (((len[0]! << 8) | len[1]!) !== wkc.length) return { ok: false, drop: 'wkc-bad-length' };
  const tag = wkc.subarray(0, TLS_CRYPT_TAG_LENGTH);
  const decipher = createCipheriv('aes-256-ctr', server.cipherKey, tag.subarray(0, TLS_CRYPT_IV_LENGTH));
  const plain = Buffer.concat([
    decipher.update(wkc.subarray(TLS_CRYPT_TAG_LENGTH, wkc.length - 2)),
    decipher.final(),
  ]);
  const expected = createHmac('sha256', server.hmacKey).update(len).update(plain).digest();
  if (!timingSafeEqual(expected, tag)) {
    plain.fill(0);
    return { ok: false, drop: 'wkc-authentication-failed' };
  }
  const clientKey = StaticKey.fromBytes(plain.subarray(0, TLS_CRYPT_V2_CLIENT_KEY_LENGTH));
  const metadata = new Uint8Array(plain.subarray(TLS_CRYPT_V2_CLIENT_KEY_LENGTH));
  plain.fill(0);
  return { ok: true, clientKey, metadata };
}

/**
 * Splits a V3 reset or WKC packet into the tls-crypt packet and the WKc after it (tls_crypt.c
 * tls_crypt_v2_extract_client_key: the last two bytes are WKc's length).
 */
export function splitWkc(
  bytes: Uint8Array,
): { ok: true; packet: Uint8Array; wkc: Uint8Array } | { ok: false; drop: WkcDropReason } {
  if (bytes.length < 1 + 2) return { ok: false, drop: 'wkc-truncated' };
  const length = (bytes[bytes.length - 2]! << 8) | bytes[bytes.length - 1]!;
  if (length < TLS_CRYPT_V2_MIN_WKC_LENGTH || length > TLS_CRYPT_V2_MAX_WKC_LENGTH)
    return { ok: false, drop: 'wkc-bad-length' };
  if (length > bytes.length - 1) return { ok: false, drop: 'wkc-truncated' };
  const cut = bytes.length - length;
  return { ok: true, packet: bytes.subarray(0, cut), wkc: bytes.subarray(cut) };
}

// ---------------------------------------------------------------------------------------------------------
// Client keys

/** A client key, as `openvpn --tls-crypt-v2 SERVER.key --genkey tls-crypt-v2-client` writes it. */
export interface ClientKeyFile {
  readonly clientKey: StaticKey;
  readonly wkc: Uint8Array;
}

/**
 * Makes a client key: a fresh Kc, wrapped with the server key together with `metadata`. Returns the key file
 * (PEM, for the client's `--tls-crypt-v2`) and its parts.
 */
export function generateClientKey(
  server: TlsCryptV2ServerKey,
  metadata: Metadata,
  random: (n: number) => Uint8Array = randomBytes,
): ClientKeyFile & { readonly pem: string } {
  const clientKey = StaticKey.generate(random);
  const wkc = wrapClientKey(server, clientKey, encodeMetadata(metadata));
  const kc = clientKey.exportBytes();
  const pem = pemEncode(new Uint8Array(Buffer.concat([kc, wkc])), TLS_CRYPT_V2_CLIENT_PEM_NAME);
  kc.fill(0);
  return { clientKey, wkc, pem };
}

export function parseClientKey(
  text: string,
): ({ ok: true } & ClientKeyFile) | { ok: false; error: KeyFileError } {
  const pem = pemDecode(text, TLS_CRYPT_V2_CLIENT_PEM_NAME);
  if (!pem.ok) return pem;
  const bytes = pem.bytes;
  const wkcLength = bytes.length - TLS_CRYPT_V2_CLIENT_KEY_LENGTH;
  if (wkcLength < TLS_CRYPT_V2_MIN_WKC_LENGTH || wkcLength > TLS_CRYPT_V2_MAX_WKC_LENGTH)
    return { ok: false, error: 'wrong-length' };
  if (((bytes[bytes.length - 2]! << 8) | bytes[bytes.length - 1]!) !== wkcLength)
    return { ok: false, error: 'wrong-length' };
  return {
    ok: true,
    clientKey: StaticKey.fromBytes(bytes.subarray(0, TLS_CRYPT_V2_CLIENT_KEY_LENGTH)),
    wkc: bytes.slice(TLS_CRYPT_V2_CLIENT_KEY_LENGTH),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Packets with WKc

export type TlsCryptV2DropReason = WkcDropReason | TlsCryptDropReason | 'no-wkc-opcode';

export interface UnwrappedV3 extends UnwrappedClientKey {
  /** The server-side tls-crypt keys for this client (Kc in the server direction). */
  readonly keys: TlsCryptKeys;
  readonly packet: ControlPacket | AckPacket;
  readonly wrap: WrapId;
}

/**
 * Unwraps a P_CONTROL_HARD_RESET_CLIENT_V3 or P_CONTROL_WKC_V1 with the server key: WKc first, then the
 * packet with the recovered Kc. `replay`, when given, is checked and updated as in tlsCryptUnwrap.
 */
export function unwrapWithWkc(
  server: TlsCryptV2ServerKey,
  bytes: Uint8Array,
  replay?: ReplayWindow,
): ({ ok: true } & UnwrappedV3) | { ok: false; drop: TlsCryptV2DropReason } {
  if (bytes.length === 0 || !carriesWkc(parseHeaderByte(bytes[0]!).opcode))
    return { ok: false, drop: 'no-wkc-opcode' };
  const split = splitWkc(bytes);
  if (!split.ok) return split;
  if (split.packet.length < TLS_CRYPT_OFF_CT + 1) return { ok: false, drop: 'too-short' };
  const unwrapped = unwrapClientKey(server, split.wkc);
  if (!unwrapped.ok) return unwrapped;
  const keys = TlsCryptKeys.fromStaticKey(unwrapped.clientKey, 'server');
  const result = tlsCryptUnwrap(keys, split.packet, replay);
  if (!result.ok) return result;
  return {
    ok: true,
    clientKey: unwrapped.clientKey,
    metadata: unwrapped.metadata,
    keys,
    packet: result.packet,
    wrap: result.wrap,
  };
}

/** The client's side: wraps a packet with Kc (client direction) and appends WKc. */
export function wrapWithWkc(
  clientKeys: TlsCryptKeys,
  wkc: Uint8Array,
  packet: ControlPacket | AckPacket,
  id: WrapId,
): Uint8Array {
  if (!carriesWkc(packet.opcode)) throw new RangeError('only V3 resets and WKC packets carry a WKc');
  const wrapped = tlsCryptWrap(clientKeys, packet, id);
  const out = new Uint8Array(wrapped.length + wkc.length);
  out.set(wrapped, 0);
  out.set(wkc, wrapped.length);
  return out;
}
