/**
 * The OpenVPN wire format (openvpn-rfc §"Packet format"; OpenVPN's ssl_pkt.c, reliable.c): parsing into a
 * discriminated union with exact length checks, and serialisation. Nothing here throws on input: a packet
 * that does not fit becomes a typed drop reason.
 *
 * Every packet starts with one byte, `opcode << 3 | key_id`. Then:
 *
 *   control (resets, P_CONTROL_V1):  session_id(8) ‖ ack array ‖ message packet id(4) ‖ payload
 *   P_ACK_V1:                        session_id(8) ‖ ack array (at least one id, nothing after it)
 *   P_DATA_V1:                       payload
 *   P_DATA_V2:                       peer_id(3) ‖ payload
 *
 * and the ack array is `count(1) ‖ count × packet id(4) ‖ remote session_id(8) if count > 0`.
 *
 * With tls-crypt the control packets are rearranged: session id, then the wrapping's own packet id and time,
 * then the tag, then the encrypted ack array, message packet id and payload (tls-crypt.ts). This file offers
 * both halves: the plain layout (no control-channel wrapping) and the "body" that tls-crypt encrypts.
 */
import {
  KEY_ID_MASK,
  MAX_ACKS_PER_PACKET,
  MAX_KEY_ID,
  OPCODE_SHIFT,
  P_ACK_V1,
  P_CONTROL_HARD_RESET_CLIENT_V1,
  P_CONTROL_HARD_RESET_CLIENT_V2,
  P_CONTROL_HARD_RESET_CLIENT_V3,
  P_CONTROL_HARD_RESET_SERVER_V1,
  P_CONTROL_HARD_RESET_SERVER_V2,
  P_CONTROL_SOFT_RESET_V1,
  P_CONTROL_V1,
  P_CONTROL_WKC_V1,
  P_DATA_V1,
  P_DATA_V2,
  PACKET_ID_LENGTH,
  PEER_ID_LENGTH,
  SESSION_ID_LENGTH,
} from './constants.js';

// ---------------------------------------------------------------------------------------------------------
// Identifiers

declare const sessionIdBrand: unique symbol;
/** An 8-byte session id; only `sessionId()` and the parser make one. */
export type SessionId = Uint8Array & { readonly [sessionIdBrand]: true };

/** A session id from exactly 8 bytes (copied), or undefined for any other length. */
export function sessionId(bytes: Uint8Array): SessionId | undefined {
  if (bytes.length !== SESSION_ID_LENGTH) return undefined;
  return Uint8Array.from(bytes) as SessionId;
}

export function sameSessionId(a: SessionId, b: SessionId): boolean {
  for (let i = 0; i < SESSION_ID_LENGTH; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Opcodes of the control channel that carry a message packet id (and so go through reliable.ts). */
export type ControlOpcode =
  | typeof P_CONTROL_HARD_RESET_CLIENT_V2
  | typeof P_CONTROL_HARD_RESET_CLIENT_V3
  | typeof P_CONTROL_HARD_RESET_SERVER_V2
  | typeof P_CONTROL_SOFT_RESET_V1
  | typeof P_CONTROL_V1
  | typeof P_CONTROL_WKC_V1;

export function isControlOpcode(opcode: number): opcode is ControlOpcode {
  return (
    opcode === P_CONTROL_HARD_RESET_CLIENT_V2 ||
    opcode === P_CONTROL_HARD_RESET_CLIENT_V3 ||
    opcode === P_CONTROL_HARD_RESET_SERVER_V2 ||
    opcode === P_CONTROL_SOFT_RESET_V1 ||
    opcode === P_CONTROL_V1 ||
    opcode === P_CONTROL_WKC_V1
  );
}

/** Opcodes that carry a WKc after the tls-crypt packet (tls-crypt-v2.ts). */
export function carriesWkc(opcode: number): boolean {
  return opcode === P_CONTROL_HARD_RESET_CLIENT_V3 || opcode === P_CONTROL_WKC_V1;
}

// ---------------------------------------------------------------------------------------------------------
// The union

/** Acknowledgements carried by a control or ACK packet. */
export interface AckArray {
  /** Packet ids acknowledged, at most MAX_ACKS_PER_PACKET. */
  readonly ids: readonly number[];
  /** The session id of the peer whose packets are acknowledged; present exactly when `ids` is not empty. */
  readonly remoteSessionId: SessionId | undefined;
}

export interface ControlPacket {
  readonly kind: 'control';
  readonly opcode: ControlOpcode;
  readonly keyId: number;
  readonly sessionId: SessionId;
  readonly acks: AckArray;
  /** The reliability layer's message packet id. */
  readonly packetId: number;
  readonly payload: Uint8Array;
}

export interface AckPacket {
  readonly kind: 'ack';
  readonly opcode: typeof P_ACK_V1;
  readonly keyId: number;
  readonly sessionId: SessionId;
  readonly acks: AckArray;
}

export interface DataV1Packet {
  readonly kind: 'data-v1';
  readonly opcode: typeof P_DATA_V1;
  readonly keyId: number;
  readonly payload: Uint8Array;
}

export interface DataV2Packet {
  readonly kind: 'data-v2';
  readonly opcode: typeof P_DATA_V2;
  readonly keyId: number;
  /** 24 bits; PEER_ID_UNDEFINED when the server assigned none. */
  readonly peerId: number;
  readonly payload: Uint8Array;
}

export type Packet = ControlPacket | AckPacket | DataV1Packet | DataV2Packet;

/** Why a packet could not be parsed. */
export const PACKET_DROP_REASONS = [
  'empty',
  'unknown-opcode',
  /** P_CONTROL_HARD_RESET_*_V1: key-method 1, gone from OpenVPN since 2.5. */
  'obsolete-opcode',
  /** A V3 reset or WKC packet outside tls-crypt-v2, where it cannot occur. */
  'needs-tls-crypt-v2',
  'truncated-session-id',
  'truncated-ack-count',
  'too-many-acks',
  'truncated-ack-ids',
  'truncated-remote-session-id',
  'truncated-packet-id',
  'ack-without-ids',
  'trailing-bytes',
  'truncated-peer-id',
  'empty-data',
] as const;

export type PacketDropReason = (typeof PACKET_DROP_REASONS)[number];

export type Parsed<T> =
  { readonly ok: true; readonly packet: T } | { readonly ok: false; readonly drop: PacketDropReason };

const drop = (reason: PacketDropReason): { ok: false; drop: PacketDropReason } => ({
  ok: false,
  drop: reason,
});

// ---------------------------------------------------------------------------------------------------------
// Header byte

export interface Header {
  readonly opcode: number;
  readonly keyId: number;
}

export function parseHeaderByte(byte: number): Header {
  return { opcode: byte >>> OPCODE_SHIFT, keyId: byte & KEY_ID_MASK };
}

export function headerByte(opcode: number, keyId: number): number {
  return ((opcode << OPCODE_SHIFT) | (keyId & KEY_ID_MASK)) & 0xff;
}

/** Whether `opcode` is one this implementation can parse at all (the union's opcodes). */
export function knownOpcode(opcode: number): 'known' | 'obsolete' | 'unknown' {
  if (isControlOpcode(opcode) || opcode === P_ACK_V1 || opcode === P_DATA_V1 || opcode === P_DATA_V2)
    return 'known';
  if (opcode === P_CONTROL_HARD_RESET_CLIENT_V1 || opcode === P_CONTROL_HARD_RESET_SERVER_V1)
    return 'obsolete';
  return 'unknown';
}

// ---------------------------------------------------------------------------------------------------------
// The control body: ack array ‖ [message packet id] ‖ [payload]

/** What follows the session id of a control packet (or the tls-crypt tag, once decrypted). */
export interface ControlBody {
  readonly acks: AckArray;
  /** Absent exactly for P_ACK_V1. */
  readonly packetId: number | undefined;
  readonly payload: Uint8Array;
}

/**
 * Parses an ack array, a packet id (unless `opcode` is P_ACK_V1) and the payload from `bytes[offset..]`.
 * P_ACK_V1 must end right after its ack array and must acknowledge something.
 */
export function parseControlBody(
  opcode: number,
  bytes: Uint8Array,
  offset = 0,
): { ok: true; body: ControlBody } | { ok: false; drop: PacketDropReason } {
  let at = offset;
  if (at + 1 > bytes.length) return drop('truncated-ack-count');
  const count = bytes[at]!;
  at += 1;
  if (count > MAX_ACKS_PER_PACKET) return drop('too-many-acks');
  if (at + count * PACKET_ID_LENGTH > bytes.length) return drop('truncated-ack-ids');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    ids.push(view.getUint32(at));
    at += PACKET_ID_LENGTH;
  }
  let remoteSessionId: SessionId | undefined;
  if (count > 0) {
    if (at + SESSION_ID_LENGTH > bytes.length) return drop('truncated-remote-session-id');
    remoteSessionId = bytes.slice(at, at + SESSION_ID_LENGTH) as SessionId;
    at += SESSION_ID_LENGTH;
  }
  const acks: AckArray = { ids, remoteSessionId };
  if (opcode === P_ACK_V1) {
    if (count === 0) return drop('ack-without-ids');
    if (at !== bytes.length) return drop('trailing-bytes');
    return { ok: true, body: { acks, packetId: undefined, payload: new Uint8Array(0) } };
  }
  if (at + PACKET_ID_LENGTH > bytes.length) return drop('truncated-packet-id');
  const packetId = view.getUint32(at);
  at += PACKET_ID_LENGTH;
  return { ok: true, body: { acks, packetId, payload: bytes.slice(at) } };
}

/** Length of the serialised body. */
export function controlBodyLength(
  acks: AckArray,
  packetId: number | undefined,
  payloadLength: number,
): number {
  const n = acks.ids.length;
  return (
    1 +
    n * PACKET_ID_LENGTH +
    (n > 0 ? SESSION_ID_LENGTH : 0) +
    (packetId === undefined ? 0 : PACKET_ID_LENGTH) +
    payloadLength
  );
}

/**
 * Writes ack array ‖ [packet id] ‖ payload into `out` at `offset`; returns the offset after it. Throws on a
 * caller's mistake (more than MAX_ACKS_PER_PACKET ids, ids without a remote session id), never on input.
 */
export function writeControlBody(
  out: Uint8Array,
  offset: number,
  acks: AckArray,
  packetId: number | undefined,
  payload: Uint8Array,
): number {
  const n = acks.ids.length;
  if (n > MAX_ACKS_PER_PACKET) throw new RangeError(`at most ${MAX_ACKS_PER_PACKET} acks per packet`);
  if (n > 0 !== (acks.remoteSessionId !== undefined))
    throw new RangeError('a remote session id goes with acks, and only with acks');
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let at = offset;
  out[at++] = n;
  for (const id of acks.ids) {
    view.setUint32(at, id >>> 0);
    at += PACKET_ID_LENGTH;
  }
  if (acks.remoteSessionId !== undefined) {
    out.set(acks.remoteSessionId, at);
    at += SESSION_ID_LENGTH;
  }
  if (packetId !== undefined) {
    view.setUint32(at, packetId >>> 0);
    at += PACKET_ID_LENGTH;
  }
  out.set(payload, at);
  return at + payload.length;
}

export function serializeControlBody(
  acks: AckArray,
  packetId: number | undefined,
  payload: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(controlBodyLength(acks, packetId, payload.length));
  writeControlBody(out, 0, acks, packetId, payload);
  return out;
}

export const NO_ACKS: AckArray = Object.freeze({
  ids: Object.freeze([]) as readonly number[],
  remoteSessionId: undefined,
});

// ---------------------------------------------------------------------------------------------------------
// Whole packets in the plain layout (no control-channel wrapping)

/**
 * Parses a packet without control-channel wrapping (OpenVPN without --tls-auth/--tls-crypt, and every data
 * packet). V3 resets and WKC packets exist only under tls-crypt-v2 and are refused here.
 */
export function parsePacket(bytes: Uint8Array): Parsed<Packet> {
  if (bytes.length === 0) return drop('empty');
  const { opcode, keyId } = parseHeaderByte(bytes[0]!);
  const known = knownOpcode(opcode);
  if (known === 'obsolete') return drop('obsolete-opcode');
  if (known === 'unknown') return drop('unknown-opcode');
  if (opcode === P_DATA_V1) {
    if (bytes.length < 2) return drop('empty-data');
    return { ok: true, packet: { kind: 'data-v1', opcode: P_DATA_V1, keyId, payload: bytes.slice(1) } };
  }
  if (opcode === P_DATA_V2) {
    if (bytes.length < 1 + PEER_ID_LENGTH) return drop('truncated-peer-id');
    if (bytes.length < 1 + PEER_ID_LENGTH + 1) return drop('empty-data');
    const peerId = (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!;
    return {
      ok: true,
      packet: { kind: 'data-v2', opcode: P_DATA_V2, keyId, peerId, payload: bytes.slice(1 + PEER_ID_LENGTH) },
    };
  }
  if (carriesWkc(opcode)) return drop('needs-tls-crypt-v2');
  if (bytes.length < 1 + SESSION_ID_LENGTH) return drop('truncated-session-id');
  const sid = bytes.slice(1, 1 + SESSION_ID_LENGTH) as SessionId;
  const parsed = parseControlBody(opcode, bytes, 1 + SESSION_ID_LENGTH);
  if (!parsed.ok) return parsed;
  return { ok: true, packet: assemble(opcode, keyId, sid, parsed.body) };
}

/** Builds the union member for a control-channel opcode from its parsed parts. */
export function assemble(
  opcode: number,
  keyId: number,
  sid: SessionId,
  body: ControlBody,
): ControlPacket | AckPacket {
  if (opcode === P_ACK_V1 || body.packetId === undefined) {
    return { kind: 'ack', opcode: P_ACK_V1, keyId, sessionId: sid, acks: body.acks };
  }
  return {
    kind: 'control',
    opcode: opcode as ControlOpcode,
    keyId,
    sessionId: sid,
    acks: body.acks,
    packetId: body.packetId,
    payload: body.payload,
  };
}

/** Serialises a packet in the plain layout. Throws only on a caller's mistake (see writeControlBody). */
export function serializePacket(packet: Packet): Uint8Array {
  if (packet.keyId < 0 || packet.keyId > MAX_KEY_ID)
    throw new RangeError(`key id ${packet.keyId} out of range`);
  switch (packet.kind) {
    case 'data-v1': {
      const out = new Uint8Array(1 + packet.payload.length);
      out[0] = headerByte(P_DATA_V1, packet.keyId);
      out.set(packet.payload, 1);
      return out;
    }
    case 'data-v2': {
      if (packet.peerId < 0 || packet.peerId > 0xffffff) throw new RangeError('peer id is 24 bits');
      const out = new Uint8Array(1 + PEER_ID_LENGTH + packet.payload.length);
      out[0] = headerByte(P_DATA_V2, packet.keyId);
      out[1] = (packet.peerId >>> 16) & 0xff;
      out[2] = (packet.peerId >>> 8) & 0xff;
      out[3] = packet.peerId & 0xff;
      out.set(packet.payload, 1 + PEER_ID_LENGTH);
      return out;
    }
    case 'ack':
    case 'control': {
      if (packet.kind === 'ack' && packet.acks.ids.length === 0)
        throw new RangeError('P_ACK_V1 without acks');
      const packetId = packet.kind === 'control' ? packet.packetId : undefined;
      const payload = packet.kind === 'control' ? packet.payload : new Uint8Array(0);
      const out = new Uint8Array(
        1 + SESSION_ID_LENGTH + controlBodyLength(packet.acks, packetId, payload.length),
      );
      out[0] = headerByte(packet.opcode, packet.keyId);
      out.set(packet.sessionId, 1);
      writeControlBody(out, 1 + SESSION_ID_LENGTH, packet.acks, packetId, payload);
      return out;
    }
  }
}
