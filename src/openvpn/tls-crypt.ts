/**
 * tls-crypt (OpenVPN 2.4+, tls_crypt.c; openvpn-rfc §"tls-crypt"): every control-channel packet is
 * authenticated and encrypted with a pre-shared static key, so that nobody without the key gets a TLS
 * handshake out of the server, or even learns that it speaks OpenVPN.
 *
 * Wrapping a packet, in order:
 *   1. header  = opcode/key id ‖ session id ‖ packet id(4) ‖ time(4)   (the long-form packet id, replay.ts)
 *   2. tag     = HMAC-SHA256(Ka_out, header ‖ plaintext), where plaintext = ack array ‖ [packet id] ‖ payload
 *   3. cipher  = AES-256-CTR(Ke_out, IV = tag[0..16], plaintext)      (a synthetic IV, as in SIV)
 *   4. packet  = header ‖ tag ‖ cipher
 * Unwrapping decrypts, recomputes the tag over header ‖ plaintext and compares in constant time; only then
 * is the packet id checked against the replay window and the plaintext parsed.
 *
 * The key file holds two keys of 64 cipher bytes and 64 HMAC bytes each (crypto.h struct key2). The server
 * sends with key 0 and receives with key 1; the client the other way round (tls_crypt_init_key: the server
 * uses KEY_DIRECTION_NORMAL, the client KEY_DIRECTION_INVERSE). AES-256 uses the first 32 of the cipher
 * bytes, HMAC-SHA256 the first 32 of the HMAC bytes.
 */
import { createCipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import {
  AES_256_KEY_LENGTH,
  HMAC_SHA256_KEY_LENGTH,
  KEY2_LENGTH,
  KEY_HALF_LENGTH,
  KEY_LENGTH,
  NET_TIME_LENGTH,
  PACKET_ID_LENGTH,
  P_ACK_V1,
  SESSION_ID_LENGTH,
  STATIC_KEY_BEGIN,
  STATIC_KEY_END,
  TLS_CRYPT_IV_LENGTH,
  TLS_CRYPT_OFF_CT,
  TLS_CRYPT_OFF_PID,
  TLS_CRYPT_OFF_TAG,
  TLS_CRYPT_TAG_LENGTH,
} from './constants.js';
import {
  assemble,
  controlBodyLength,
  headerByte,
  isControlOpcode,
  knownOpcode,
  parseControlBody,
  parseHeaderByte,
  writeControlBody,
  type AckPacket,
  type ControlPacket,
  type PacketDropReason,
  type SessionId,
} from './packet.js';
import { ReplayWindow, type ReplayVerdict } from './replay.js';

// ---------------------------------------------------------------------------------------------------------
// Keys

/** The 256 bytes of a static key file (two keys); never printed. */
export class StaticKey {
  private constructor(private readonly bytes: Uint8Array) {}

  /** Exactly KEY2_LENGTH bytes (copied); throws RangeError otherwise (a caller's mistake, not input). */
  static fromBytes(bytes: Uint8Array): StaticKey {
    if (bytes.length !== KEY2_LENGTH) throw new RangeError(`a static key is ${KEY2_LENGTH} bytes`);
    return new StaticKey(Uint8Array.from(bytes));
  }

  static generate(random: (n: number) => Uint8Array = randomBytes): StaticKey {
    return StaticKey.fromBytes(random(KEY2_LENGTH));
  }

  /** Key `index` (0 or 1): its cipher bytes and HMAC bytes, as used by AES-256 and HMAC-SHA256. */
  half(index: 0 | 1): { cipher: Uint8Array; hmac: Uint8Array } {
    const base = index * KEY_LENGTH;
    return {
      cipher: this.bytes.slice(base, base + AES_256_KEY_LENGTH),
      hmac: this.bytes.slice(base + KEY_HALF_LENGTH, base + KEY_HALF_LENGTH + HMAC_SHA256_KEY_LENGTH),
    };
  }

  /** The raw 256 bytes (for the tls-crypt-v2 client key, which embeds them). */
  exportBytes(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }

  equals(other: StaticKey): boolean {
    return timingSafeEqual(this.bytes, other.bytes);
  }

  toJSON(): string {
    return '(redacted)';
  }
  toString(): string {
    return '(redacted)';
  }
  [inspect.custom](): string {
    return 'StaticKey(redacted)';
  }
}

export type StaticKeyError = 'missing-begin' | 'missing-end' | 'bad-hex' | 'wrong-length';

/**
 * Parses `openvpn --genkey tls-crypt|secret|tls-auth` output: optional '#' comments, the BEGIN line, 512 hex
 * digits (OpenVPN writes 16 lines of 32; whitespace is ignored), the END line.
 */
export function parseStaticKeyFile(
  text: string,
): { ok: true; key: StaticKey } | { ok: false; error: StaticKeyError } {
  const begin = text.indexOf(STATIC_KEY_BEGIN);
  if (begin < 0) return { ok: false, error: 'missing-begin' };
  const start = begin + STATIC_KEY_BEGIN.length;
  const end = text.indexOf(STATIC_KEY_END, start);
  if (end < 0) return { ok: false, error: 'missing-end' };
  const hex = text.slice(start, end).replace(/\s+/g, '');
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0) return { ok: false, error: 'bad-hex' };
  if (hex.length !== KEY2_LENGTH * 2) return { ok: false, error: 'wrong-length' };
  return { ok: true, key: StaticKey.fromBytes(new Uint8Array(Buffer.from(hex, 'hex'))) };
}

/** The key file as `openvpn --genkey tls-crypt` writes it. */
export function formatStaticKeyFile(key: StaticKey): string {
  const hex = Buffer.from(key.exportBytes()).toString('hex');
  const lines: string[] = [];
  for (let i = 0; i < hex.length; i += 32) lines.push(hex.slice(i, i + 32));
  return `#\n# 2048 bit OpenVPN static key\n#\n${STATIC_KEY_BEGIN}\n${lines.join('\n')}\n${STATIC_KEY_END}\n`;
}

export type Role = 'server' | 'client';

/** One direction's keys: AES-256-CTR and HMAC-SHA256. */
interface DirectionKeys {
  readonly cipher: Uint8Array;
  readonly hmac: Uint8Array;
}

/** The keys one side uses: what it sends with and what it receives with. */
export class TlsCryptKeys {
  private constructor(
    readonly encrypt: DirectionKeys,
    readonly decrypt: DirectionKeys,
  ) {}

  /** The server sends with key 0 and receives with key 1; the client the other way round. */
  static fromStaticKey(key: StaticKey, role: Role): TlsCryptKeys {
    const out = role === 'server' ? key.half(0) : key.half(1);
    const inn = role === 'server' ? key.half(1) : key.half(0);
    return new TlsCryptKeys(out, inn);
  }

  toJSON(): string {
    return '(redacted)';
  }
  toString(): string {
    return '(redacted)';
  }
  [inspect.custom](): string {
    return 'TlsCryptKeys(redacted)';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Wrap / unwrap

/** The fields of the wrapping itself, outside the control packet. */
export interface WrapId {
  /** tls-crypt's own packet id, starting at 1 (or at EARLY_NEG_START + 1 for a tls-crypt-v2 client). */
  readonly packetId: number;
  /** Seconds since the epoch (net_time_t, 32 bits). */
  readonly time: number;
}

/**
 * Wraps a control or ACK packet. Throws only on a caller's mistake (see packet.ts writeControlBody, or a
 * wrap id outside 32 bits).
 */
export function tlsCryptWrap(keys: TlsCryptKeys, packet: ControlPacket | AckPacket, id: WrapId): Uint8Array {
  if (!Number.isInteger(id.packetId) || id.packetId < 0 || id.packetId > 0xffffffff)
    throw new RangeError('tls-crypt packet id is 32 bits');
  if (!Number.isInteger(id.time) || id.time < 0 || id.time > 0xffffffff)
    throw new RangeError('tls-crypt time is 32 bits');
  const packetId = packet.kind === 'control' ? packet.packetId : undefined;
  const payload = packet.kind === 'control' ? packet.payload : new Uint8Array(0);
  const plain = new Uint8Array(controlBodyLength(packet.acks, packetId, payload.length));
  writeControlBody(plain, 0, packet.acks, packetId, payload);

  const out = new Uint8Array(TLS_CRYPT_OFF_CT + plain.length);
  const view = new DataView(out.buffer);
  out[0] = headerByte(packet.opcode, packet.keyId);
  out.set(packet.sessionId, 1);
  view.setUint32(TLS_CRYPT_OFF_PID, id.packetId);
  view.setUint32(TLS_CRYPT_OFF_PID + PACKET_ID_LENGTH, id.time);

  const tag = createHmac('sha256', keys.encrypt.hmac)
    .update(out.subarray(0, TLS_CRYPT_OFF_TAG))
    .update(plain)
    .digest();
  out.set(tag, TLS_CRYPT_OFF_TAG);
  const cipher = createCipheriv('aes-256-ctr', keys.encrypt.cipher, tag.subarray(0, TLS_CRYPT_IV_LENGTH));
  const encrypted = cipher.update(plain);
  cipher.final();
  out.set(encrypted, TLS_CRYPT_OFF_CT);
  return out;
}

export type TlsCryptDropReason =
  | 'too-short'
  | 'unknown-opcode'
  | 'obsolete-opcode'
  /** Data-channel packets are never wrapped with tls-crypt. */
  | 'not-control'
  | 'authentication-failed'
  | Exclude<ReplayVerdict, 'fresh'>
  /** Authenticated, but the plaintext is not a well-formed control body (a peer holding the key misbehaves). */
  | PacketDropReason;

export type UnwrapResult =
  | { readonly ok: true; readonly packet: ControlPacket | AckPacket; readonly wrap: WrapId }
  | { readonly ok: false; readonly drop: TlsCryptDropReason };

/**
 * Authenticates, decrypts and parses one packet. With a `replay` window, the wrap's packet id is checked
 * against it and, when the packet is accepted, recorded in it; without one, no replay check is made (the
 * stateless first packet of a handshake, which the caller protects otherwise).
 */
export function tlsCryptUnwrap(keys: TlsCryptKeys, bytes: Uint8Array, replay?: ReplayWindow): UnwrapResult {
  if (bytes.length === 0) return { ok: false, drop: 'too-short' };
  const { opcode, keyId } = parseHeaderByte(bytes[0]!);
  const known = knownOpcode(opcode);
  if (known === 'unknown') return { ok: false, drop: 'unknown-opcode' };
  if (known === 'obsolete') return { ok: false, drop: 'obsolete-opcode' };
  if (!isControlOpcode(opcode) && opcode !== P_ACK_V1) return { ok: false, drop: 'not-control' };
  // The shortest wrapped packet is a P_ACK_V1 with one ack: count, id, remote session id.
  if (bytes.length < TLS_CRYPT_OFF_CT + 1) return { ok: false, drop: 'too-short' };

  const tag = bytes.subarray(TLS_CRYPT_OFF_TAG, TLS_CRYPT_OFF_CT);
  const decipher = createCipheriv('aes-256-ctr', keys.decrypt.cipher, tag.subarray(0, TLS_CRYPT_IV_LENGTH));
  const plain = new Uint8Array(decipher.update(bytes.subarray(TLS_CRYPT_OFF_CT)));
  decipher.final();
  const expected = createHmac('sha256', keys.decrypt.hmac)
    .update(bytes.subarray(0, TLS_CRYPT_OFF_TAG))
    .update(plain)
    .digest();
  if (!timingSafeEqual(expected, tag)) return { ok: false, drop: 'authentication-failed' };

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wrap: WrapId = {
    packetId: view.getUint32(TLS_CRYPT_OFF_PID),
    time: view.getUint32(TLS_CRYPT_OFF_PID + PACKET_ID_LENGTH),
  };
  if (replay) {
    const verdict = replay.check(wrap.packetId, wrap.time);
    if (verdict !== 'fresh') return { ok: false, drop: verdict };
  }
  const body = parseControlBody(opcode, plain);
  if (!body.ok) return body;
  replay?.commit(wrap.packetId, wrap.time);
  const sid = bytes.slice(1, 1 + SESSION_ID_LENGTH) as SessionId;
  return { ok: true, packet: assemble(opcode, keyId, sid, body.body), wrap };
}

/** Bytes tls-crypt adds to a control packet in the plain layout (packet.ts). */
export const TLS_CRYPT_OVERHEAD = PACKET_ID_LENGTH + NET_TIME_LENGTH + TLS_CRYPT_TAG_LENGTH;

/**
 * One side's tls-crypt state for one session: the keys, the next wrap packet id to send and the replay
 * window of what was received.
 */
export class TlsCryptChannel {
  private nextPacketId: number;
  readonly replay: ReplayWindow;

  constructor(
    readonly keys: TlsCryptKeys,
    { firstPacketId = 1, replayWindow }: { firstPacketId?: number; replayWindow?: number } = {},
  ) {
    this.nextPacketId = firstPacketId;
    this.replay = new ReplayWindow(replayWindow);
  }

  /** Wraps `packet` with the next packet id and `nowMs` as its time. */
  wrap(packet: ControlPacket | AckPacket, nowMs: number): Uint8Array {
    if (this.nextPacketId > 0xffffffff) throw new RangeError('tls-crypt packet id exhausted');
    const id: WrapId = { packetId: this.nextPacketId++, time: Math.floor(nowMs / 1000) >>> 0 };
    return tlsCryptWrap(this.keys, packet, id);
  }

  unwrap(bytes: Uint8Array): UnwrapResult {
    return tlsCryptUnwrap(this.keys, bytes, this.replay);
  }
}
