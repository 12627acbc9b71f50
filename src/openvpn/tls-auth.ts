/**
 * tls-auth (OpenVPN's ssl_pkt.c write_control_auth/read_control_auth with swap_hmac; openvpn-rfc
 * §"tls-auth"): tls-crypt's older sibling. Control packets are authenticated, not encrypted, with an HMAC
 * from a pre-shared static key, so a server drops a stranger's packets before any TLS.
 *
 *   wire   = opcode/key id ‖ session id ‖ HMAC ‖ packet id(4) ‖ time(4) ‖ ack array ‖ [packet id] ‖ payload
 *   HMAC   = HMAC-<digest>(Ka_out, packet id ‖ time ‖ opcode/key id ‖ session id ‖ ack array ‖ … ‖ payload)
 *
 * (OpenVPN computes the HMAC with the packet id and time in front and then swaps the first 9 bytes behind
 * the HMAC; the result is the layout above.) Key direction (crypto.c key_direction_state_init): with
 * `--tls-auth FILE 0` a side sends with HMAC key 0 and receives with key 1, with `1` the other way round,
 * and without a direction both directions use key 0. The digest (--auth) is SHA1 by default; the HMAC key is
 * the first digest-length bytes of a key's 64 HMAC bytes.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  KEY_HALF_LENGTH,
  KEY_LENGTH,
  NET_TIME_LENGTH,
  PACKET_ID_LENGTH,
  P_ACK_V1,
  SESSION_ID_LENGTH,
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
import type { StaticKey } from './tls-crypt.js';
import type { WrapId } from './tls-crypt.js';

export type TlsAuthDigest = 'sha1' | 'sha256';
export const TLS_AUTH_DIGEST_LENGTH: Record<TlsAuthDigest, number> = { sha1: 20, sha256: 32 };
/** --tls-auth FILE [0|1]; undefined for "no direction" (both sides use key 0 both ways). */
export type KeyDirection = 0 | 1 | undefined;

export class TlsAuthKeys {
  private constructor(
    readonly digest: TlsAuthDigest,
    private readonly out: Uint8Array,
    private readonly inn: Uint8Array,
  ) {}

  static fromStaticKey(key: StaticKey, direction: KeyDirection, digest: TlsAuthDigest = 'sha1'): TlsAuthKeys {
    const bytes = key.exportBytes();
    const hmacOf = (index: 0 | 1): Uint8Array =>
      bytes.slice(
        index * KEY_LENGTH + KEY_HALF_LENGTH,
        index * KEY_LENGTH + KEY_HALF_LENGTH + TLS_AUTH_DIGEST_LENGTH[digest],
      );
    const keys =
      direction === undefined
        ? new TlsAuthKeys(digest, hmacOf(0), hmacOf(0))
        : direction === 0
          ? new TlsAuthKeys(digest, hmacOf(0), hmacOf(1))
          : new TlsAuthKeys(digest, hmacOf(1), hmacOf(0));
    bytes.fill(0);
    return keys;
  }

  /** HMAC over the packet in OpenVPN's pre-swap order. */
  mac(direction: 'out' | 'in', bytes: Uint8Array, hmacLength: number): Buffer {
    const idStart = 1 + SESSION_ID_LENGTH + hmacLength;
    const bodyStart = idStart + PACKET_ID_LENGTH + NET_TIME_LENGTH;
    return createHmac(this.digest, direction === 'out' ? this.out : this.inn)
      .update(bytes.subarray(idStart, bodyStart))
      .update(bytes.subarray(0, 1 + SESSION_ID_LENGTH))
      .update(bytes.subarray(bodyStart))
      .digest();
  }

  toJSON(): string {
    return '(redacted)';
  }
  toString(): string {
    return '(redacted)';
  }
}

export function tlsAuthWrap(keys: TlsAuthKeys, packet: ControlPacket | AckPacket, id: WrapId): Uint8Array {
  if (!Number.isInteger(id.packetId) || id.packetId < 0 || id.packetId > 0xffffffff)
    throw new RangeError('tls-auth packet id is 32 bits');
  if (!Number.isInteger(id.time) || id.time < 0 || id.time > 0xffffffff)
    throw new RangeError('tls-auth time is 32 bits');
  const hmacLength = TLS_AUTH_DIGEST_LENGTH[keys.digest];
  const packetId = packet.kind === 'control' ? packet.packetId : undefined;
  const payload = packet.kind === 'control' ? packet.payload : new Uint8Array(0);
  const idStart = 1 + SESSION_ID_LENGTH + hmacLength;
  const bodyStart = idStart + PACKET_ID_LENGTH + NET_TIME_LENGTH;
  const out = new Uint8Array(bodyStart + controlBodyLength(packet.acks, packetId, payload.length));
  const view = new DataView(out.buffer);
  out[0] = headerByte(packet.opcode, packet.keyId);
  out.set(packet.sessionId, 1);
  view.setUint32(idStart, id.packetId);
  view.setUint32(idStart + PACKET_ID_LENGTH, id.time);
  writeControlBody(out, bodyStart, packet.acks, packetId, payload);
  out.set(keys.mac('out', out, hmacLength), 1 + SESSION_ID_LENGTH);
  return out;
}

export type TlsAuthDropReason =
  | 'too-short'
  | 'unknown-opcode'
  | 'obsolete-opcode'
  | 'not-control'
  /** V3 resets and WKC packets belong to tls-crypt-v2. */
  | 'needs-tls-crypt-v2'
  | 'authentication-failed'
  | Exclude<ReplayVerdict, 'fresh'>
  | PacketDropReason;

export type TlsAuthUnwrapResult =
  | { readonly ok: true; readonly packet: ControlPacket | AckPacket; readonly wrap: WrapId }
  | { readonly ok: false; readonly drop: TlsAuthDropReason };

export function tlsAuthUnwrap(
  keys: TlsAuthKeys,
  bytes: Uint8Array,
  replay?: ReplayWindow,
): TlsAuthUnwrapResult {
  if (bytes.length === 0) return { ok: false, drop: 'too-short' };
  const { opcode, keyId } = parseHeaderByte(bytes[0]!);
  const known = knownOpcode(opcode);
  if (known === 'unknown') return { ok: false, drop: 'unknown-opcode' };
  if (known === 'obsolete') return { ok: false, drop: 'obsolete-opcode' };
  if (!isControlOpcode(opcode) && opcode !== P_ACK_V1) return { ok: false, drop: 'not-control' };
  if (opcode === 10 || opcode === 11) return { ok: false, drop: 'needs-tls-crypt-v2' };
  const hmacLength = TLS_AUTH_DIGEST_LENGTH[keys.digest];
  const idStart = 1 + SESSION_ID_LENGTH + hmacLength;
  const bodyStart = idStart + PACKET_ID_LENGTH + NET_TIME_LENGTH;
  if (bytes.length < bodyStart + 1) return { ok: false, drop: 'too-short' };
  const expected = keys.mac('in', bytes, hmacLength);
  if (!timingSafeEqual(expected, bytes.subarray(1 + SESSION_ID_LENGTH, idStart)))
    return { ok: false, drop: 'authentication-failed' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wrap: WrapId = {
    packetId: view.getUint32(idStart),
    time: view.getUint32(idStart + PACKET_ID_LENGTH),
  };
  if (replay) {
    const verdict = replay.check(wrap.packetId, wrap.time);
    if (verdict !== 'fresh') return { ok: false, drop: verdict };
  }
  const body = parseControlBody(opcode, bytes, bodyStart);
  if (!body.ok) return body;
  replay?.commit(wrap.packetId, wrap.time);
  const sid = bytes.slice(1, 1 + SESSION_ID_LENGTH) as SessionId;
  return { ok: true, packet: assemble(opcode, keyId, sid, body.body), wrap };
}

/** One side's tls-auth state for one session: keys, next packet id, replay window. */
export class TlsAuthChannel {
  private nextPacketId: number;
  readonly replay: ReplayWindow;

  constructor(
    readonly keys: TlsAuthKeys,
    { firstPacketId = 1, replayWindow }: { firstPacketId?: number; replayWindow?: number } = {},
  ) {
    this.nextPacketId = firstPacketId;
    this.replay = new ReplayWindow(replayWindow);
  }

  wrap(packet: ControlPacket | AckPacket, nowMs: number): Uint8Array {
    if (this.nextPacketId > 0xffffffff) throw new RangeError('tls-auth packet id exhausted');
    return tlsAuthWrap(this.keys, packet, {
      packetId: this.nextPacketId++,
      time: Math.floor(nowMs / 1000) >>> 0,
    });
  }

  unwrap(bytes: Uint8Array): TlsAuthUnwrapResult {
    return tlsAuthUnwrap(this.keys, bytes, this.replay);
  }
}
