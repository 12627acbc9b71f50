/**
 * The cookie layer (paper §5.3 and §5.4.4, "Cookie MACs"): mac1 proves the sender knows our public key and
 * is always checked; mac2 proves it can receive at its source address and is required only under load.
 * A responder under load answers a mac1-valid message lacking a good mac2 with a cookie reply; the
 * initiator stores that cookie and puts mac2 on its next handshake message.
 */
import { timingSafeEqual } from 'node:crypto';
import { XAEAD_NONCE_LENGTH, xaeadOpen, xaeadSeal } from '../crypto/aead.js';
import { hash, mac } from '../crypto/blake2s.js';
import { COOKIE_REFRESH_TIME, LABEL_COOKIE, LABEL_MAC1 } from './constants.js';
import type { DropReason } from './drops.js';
import { encodeCookieReply, type CookieReply } from './messages.js';

const encoder = new TextEncoder();
const MAC1_LABEL = encoder.encode(LABEL_MAC1);
const COOKIE_LABEL = encoder.encode(LABEL_COOKIE);
const MAC_LENGTH = 16;

/** Keys derived from the public key of whoever receives the handshake message. */
function mac1Key(receiverPublic: Uint8Array): Uint8Array {
  return hash(MAC1_LABEL, receiverPublic);
}

function cookieKey(receiverPublic: Uint8Array): Uint8Array {
  return hash(COOKIE_LABEL, receiverPublic);
}

function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

function macMatches(key: Uint8Array, covered: Uint8Array, expected: Uint8Array): boolean {
  return timingSafeEqual(mac(key, covered), expected);
}

/** Our side as a receiver of handshake messages: verifies MACs and issues cookies. */
export class CookieChecker {
  private readonly mac1Key: Uint8Array;
  private readonly encryptionKey: Uint8Array;
  private secret: Uint8Array | undefined;
  private secretSetAt = -Infinity;

  constructor(localPublic: Uint8Array) {
    this.mac1Key = mac1Key(localPublic);
    this.encryptionKey = cookieKey(localPublic);
  }

  checkMac1(message: Uint8Array, mac1Offset: number): boolean {
    return macMatches(
      this.mac1Key,
      message.subarray(0, mac1Offset),
      message.subarray(mac1Offset, mac1Offset + MAC_LENGTH),
    );
  }

  /** Whether mac2 is MAC(τ, message up to mac2). An all-zero mac2 (none: §5.4.7) fails without a MAC. */
  checkMac2(message: Uint8Array, mac2Offset: number, cookie: Uint8Array): boolean {
    const mac2 = message.subarray(mac2Offset, mac2Offset + MAC_LENGTH);
    if (isZero(mac2)) return false;
    return macMatches(cookie, message.subarray(0, mac2Offset), mac2);
  }

  /** A cookie reply carrying `cookie` for a message whose sender index is `receiver` and whose mac1 is `mac1`. */
  createReply(
    receiver: number,
    mac1: Uint8Array,
    cookie: Uint8Array,
    random: (n: number) => Uint8Array,
  ): Uint8Array {
    const nonce = random(XAEAD_NONCE_LENGTH);
    const sealed = xaeadSeal(this.encryptionKey, nonce, cookie, mac1);
    return encodeCookieReply(receiver, nonce, sealed);
  }

  /**
   * τ = MAC(R_m, A_m): R_m is a random secret replaced every two minutes, A_m the source address. Computed
   * once per message: checking mac2 and answering with a cookie reply both need it.
   */
  cookie(source: Uint8Array, now: number, random: (n: number) => Uint8Array): Uint8Array {
    if (!this.secret || now - this.secretSetAt >= COOKIE_REFRESH_TIME) {
      this.secret = Uint8Array.from(random(32));
      this.secretSetAt = now;
    }
    return mac(this.secret, source);
  }
}

/** Our side as a sender of handshake messages to one peer: adds MACs and keeps the peer's cookie. */
export class CookieGenerator {
  /**
   * Derived on first use, not when the peer is added: a gateway holds thousands of peers that never
   * handshake with it as initiator, and two keys per peer were a tenth of its memory per member.
   */
  private mac1Key: Uint8Array | undefined;
  private decryptionKey: Uint8Array | undefined;
  private lastMac1: Uint8Array | undefined;
  private cookie: Uint8Array | undefined;
  private cookieSetAt = -Infinity;

  constructor(private readonly peerPublic: Uint8Array) {}

  /** Writes mac1, and mac2 when a fresh cookie is held, into a handshake message in place. */
  addMacs(message: Uint8Array, mac1Offset: number, mac2Offset: number, now: number): void {
    this.mac1Key ??= mac1Key(this.peerPublic);
    const mac1 = mac(this.mac1Key, message.subarray(0, mac1Offset));
    message.set(mac1, mac1Offset);
    this.lastMac1 = mac1;
    if (this.cookie && now - this.cookieSetAt < COOKIE_REFRESH_TIME) {
      message.set(mac(this.cookie, message.subarray(0, mac2Offset)), mac2Offset);
    } else {
      message.fill(0, mac2Offset, mac2Offset + MAC_LENGTH);
    }
  }

  /** Stores the cookie from a reply to the last message we sent; the reply's AD is that message's mac1. */
  consumeReply(reply: CookieReply, now: number): DropReason | null {
    if (!this.lastMac1) return 'unexpected-cookie';
    this.decryptionKey ??= cookieKey(this.peerPublic);
    const cookie = xaeadOpen(this.decryptionKey, reply.nonce, reply.encryptedCookie, this.lastMac1);
    if (!cookie) return 'cookie-decrypt-failed';
    this.cookie = cookie;
    this.cookieSetAt = now;
    this.lastMac1 = undefined;
    return null;
  }

  hasCookie(now: number): boolean {
    return this.cookie !== undefined && now - this.cookieSetAt < COOKIE_REFRESH_TIME;
  }
}
