/**
 * The four WireGuard messages (paper §5.4.2–§5.4.6). Parsing checks the type word (type byte plus three
 * reserved zero bytes, read as one little-endian u32 as every implementation does) and the exact length
 * before anything else, and yields views into the datagram, never copies.
 */
import {
  COOKIE_REPLY_LENGTH,
  INITIATION_LENGTH,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  RESPONSE_LENGTH,
  TRANSPORT_HEADER_LENGTH,
  TRANSPORT_MIN_LENGTH,
} from './constants.js';
import type { DropReason } from './drops.js';

/** Offsets of mac1 and mac2 in the two handshake messages; the MACs cover everything before them. */
export const INITIATION_MAC1 = 116;
export const INITIATION_MAC2 = 132;
export const RESPONSE_MAC1 = 60;
export const RESPONSE_MAC2 = 76;

export interface Initiation {
  readonly type: 'initiation';
  readonly bytes: Uint8Array;
  readonly sender: number;
  readonly ephemeral: Uint8Array;
  readonly encryptedStatic: Uint8Array;
  readonly encryptedTimestamp: Uint8Array;
  readonly mac1: Uint8Array;
  readonly mac2: Uint8Array;
}

export interface Response {
  readonly type: 'response';
  readonly bytes: Uint8Array;
  readonly sender: number;
  readonly receiver: number;
  readonly ephemeral: Uint8Array;
  readonly encryptedNothing: Uint8Array;
  readonly mac1: Uint8Array;
  readonly mac2: Uint8Array;
}

export interface CookieReply {
  readonly type: 'cookie-reply';
  readonly receiver: number;
  readonly nonce: Uint8Array;
  readonly encryptedCookie: Uint8Array;
}

export interface Transport {
  readonly type: 'transport';
  readonly receiver: number;
  readonly counter: number;
  /** Ciphertext ‖ tag. */
  readonly sealed: Uint8Array;
}

export type Message = Initiation | Response | CookieReply | Transport;
export type ParsedMessage = Message | { readonly type: 'invalid'; readonly reason: DropReason };

/** Little-endian u32 fields, as every WireGuard message encodes its indices and counters. */
export function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export function putU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

export function parseMessage(b: Uint8Array): ParsedMessage {
  if (b.length < 4) return { type: 'invalid', reason: 'too-short' };
  switch (u32(b, 0)) {
    case MESSAGE_INITIATION:
      if (b.length !== INITIATION_LENGTH) return { type: 'invalid', reason: 'bad-length' };
      return {
        type: 'initiation',
        bytes: b,
        sender: u32(b, 4),
        ephemeral: b.subarray(8, 40),
        encryptedStatic: b.subarray(40, 88),
        encryptedTimestamp: b.subarray(88, 116),
        mac1: b.subarray(INITIATION_MAC1, INITIATION_MAC2),
        mac2: b.subarray(INITIATION_MAC2, INITIATION_LENGTH),
      };
    case MESSAGE_RESPONSE:
      if (b.length !== RESPONSE_LENGTH) return { type: 'invalid', reason: 'bad-length' };
      return {
        type: 'response',
        bytes: b,
        sender: u32(b, 4),
        receiver: u32(b, 8),
        ephemeral: b.subarray(12, 44),
        encryptedNothing: b.subarray(44, 60),
        mac1: b.subarray(RESPONSE_MAC1, RESPONSE_MAC2),
        mac2: b.subarray(RESPONSE_MAC2, RESPONSE_LENGTH),
      };
    case MESSAGE_COOKIE_REPLY:
      if (b.length !== COOKIE_REPLY_LENGTH) return { type: 'invalid', reason: 'bad-length' };
      return {
        type: 'cookie-reply',
        receiver: u32(b, 4),
        nonce: b.subarray(8, 32),
        encryptedCookie: b.subarray(32, 64),
      };
    case MESSAGE_TRANSPORT: {
      if (b.length < TRANSPORT_MIN_LENGTH) return { type: 'invalid', reason: 'bad-length' };
      const counter = u32(b, 8) + u32(b, 12) * 0x1_0000_0000; // exact below 2^53; larger values are rejected later
      return { type: 'transport', receiver: u32(b, 4), counter, sealed: b.subarray(TRANSPORT_HEADER_LENGTH) };
    }
    default:
      return { type: 'invalid', reason: 'unknown-type' };
  }
}

/** A blank initiation with its type and sender set; the handshake fills in the rest. */
export function newInitiation(sender: number): Uint8Array {
  const b = new Uint8Array(INITIATION_LENGTH);
  b[0] = MESSAGE_INITIATION;
  putU32(b, 4, sender);
  return b;
}

export function newResponse(sender: number, receiver: number): Uint8Array {
  const b = new Uint8Array(RESPONSE_LENGTH);
  b[0] = MESSAGE_RESPONSE;
  putU32(b, 4, sender);
  putU32(b, 8, receiver);
  return b;
}

export function encodeCookieReply(
  receiver: number,
  nonce: Uint8Array,
  encryptedCookie: Uint8Array,
): Uint8Array {
  const b = new Uint8Array(COOKIE_REPLY_LENGTH);
  b[0] = MESSAGE_COOKIE_REPLY;
  putU32(b, 4, receiver);
  b.set(nonce, 8);
  b.set(encryptedCookie, 32);
  return b;
}

/** The 16-byte transport header; the sealed payload follows it. */
export function writeTransportHeader(b: Uint8Array, receiver: number, counter: number): void {
  b[0] = MESSAGE_TRANSPORT;
  b[1] = 0;
  b[2] = 0;
  b[3] = 0;
  putU32(b, 4, receiver);
  putU32(b, 8, counter >>> 0);
  putU32(b, 12, Math.floor(counter / 0x1_0000_0000));
}
