/**
 * The Encrypted payload SK (RFC 7296 §3.14) for one direction of an IKE SA:
 *   - AES-CBC with an HMAC integrity transform: IV (16) | CBC(payloads | padding | pad length) | ICV, the ICV
 *     computed over the whole message from the IKE header to the end of the ciphertext;
 *   - AES-GCM-16 (RFC 5282) and ChaCha20-Poly1305 (RFC 7634): IV (8) | ciphertext | tag (16), nonce =
 *     salt (last 4 key bytes) | IV, associated data = the IKE header and the SK payload's generic header.
 * Opening checks the ICV before anything is decrypted or parsed; a failure is a typed reason.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

import type { EncrSuite, IntegSuite } from './algorithms.js';
import { ENCR, IKE_HEADER_LENGTH, PAYLOAD, PAYLOAD_HEADER_LENGTH } from './constants.js';
import {
  encodeChain,
  encodeHeader,
  parsePayloadChain,
  type IkeHeader,
  type IkeMessage,
  type Parsed,
  type Payload,
} from './messages.js';

export interface SkKeys {
  readonly encr: EncrSuite;
  readonly integ: IntegSuite | null;
  /** SK_e: cipher key, with the salt at the end for the AEADs. */
  readonly encrKey: Buffer;
  /** SK_a, or null for the AEADs. */
  readonly integKey: Buffer | null;
}

function aeadCipher(s: EncrSuite): string {
  if (s.id === ENCR.CHACHA20_POLY1305) return 'chacha20-poly1305';
  return `aes-${s.keyBits}-gcm`;
}

/**
 * AEAD seal as SK uses it: `encrKey` is the cipher key followed by the 4-byte salt, the nonce is salt | iv
 * (RFC 5282 §4, RFC 7634 §2). Returns ciphertext | 16-byte tag.
 */
export function aeadSeal(s: EncrSuite, encrKey: Buffer, iv: Buffer, aad: Buffer, plain: Buffer): Buffer {
  const keyLength = s.keymatLength - 4;
  const nonce = Buffer.concat([encrKey.subarray(keyLength), iv]);
  const c = createCipheriv(aeadCipher(s) as 'aes-256-gcm', encrKey.subarray(0, keyLength), nonce, {
    authTagLength: 16,
  });
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** The inverse of `aeadSeal`; null when the tag does not verify. */
export function aeadOpen(
  s: EncrSuite,
  encrKey: Buffer,
  iv: Buffer,
  aad: Buffer,
  sealed: Buffer,
): Buffer | null {
  if (sealed.length < s.tagLength) return null;
  const keyLength = s.keymatLength - 4;
  const nonce = Buffer.concat([encrKey.subarray(keyLength), iv]);
  try {
    const d = createDecipheriv(aeadCipher(s) as 'aes-256-gcm', encrKey.subarray(0, keyLength), nonce, {
      authTagLength: 16,
    });
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - s.tagLength));
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - s.tagLength)), d.final()]);
  } catch {
    return null;
  }
}

/** AES-CBC without padding (RFC 3602): SK pads the plaintext itself. */
export function cbc(s: EncrSuite, key: Buffer, iv: Buffer, data: Buffer, encrypt: boolean): Buffer {
  const c = encrypt
    ? createCipheriv(`aes-${s.keyBits}-cbc`, key, iv)
    : createDecipheriv(`aes-${s.keyBits}-cbc`, key, iv);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** Builds a whole protected message: header, SK payload around `inner`. `iv` must be ivLength random bytes. */
export function sealMessage(
  h: Omit<IkeHeader, 'nextPayload'>,
  inner: readonly Payload[],
  keys: SkKeys,
  iv: Buffer,
): Buffer {
  const chain = encodeChain(inner);
  const s = keys.encr;
  let padLength = 0;
  if (!s.aead) {
    const block = 16;
    padLength = (block - ((chain.bytes.length + 1) % block)) % block;
  }
  const plain = Buffer.concat([chain.bytes, Buffer.alloc(padLength), Uint8Array.of(padLength)]);
  const icvLength = s.aead ? s.tagLength : keys.integ!.icvLength;
  const skLength = PAYLOAD_HEADER_LENGTH + s.ivLength + plain.length + icvLength;
  const total = IKE_HEADER_LENGTH + skLength;
  const header = encodeHeader(h, PAYLOAD.SK, total);
  const skHeader = Buffer.alloc(PAYLOAD_HEADER_LENGTH);
  skHeader[0] = chain.first;
  skHeader.writeUInt16BE(skLength, 2);
  if (s.aead) {
    const sealed = aeadSeal(s, keys.encrKey, iv, Buffer.concat([header, skHeader]), plain);
    return Buffer.concat([header, skHeader, iv, sealed]);
  }
  const ct = cbc(s, keys.encrKey, iv, plain, true);
  const body = Buffer.concat([header, skHeader, iv, ct]);
  const icv = createHmac(keys.integ!.hash, keys.integKey!).update(body).digest().subarray(0, icvLength);
  return Buffer.concat([body, icv]);
}

/** Verifies and decrypts the SK payload of `msg` (which must end with it) and parses the inner payloads. */
export function openMessage(msg: IkeMessage, keys: SkKeys): Parsed<Payload[]> {
  const last = msg.payloads[msg.payloads.length - 1];
  if (last === undefined || last.kind !== 'sk') return { ok: false, reason: 'missing-payload' };
  const s = keys.encr;
  const body = last.body;
  const raw = msg.raw;
  const skStart = raw.length - body.length - PAYLOAD_HEADER_LENGTH;
  const icvLength = s.aead ? s.tagLength : keys.integ!.icvLength;
  if (body.length < s.ivLength + icvLength + 1) return { ok: false, reason: 'integrity-check-failed' };
  const iv = body.subarray(0, s.ivLength);
  const ct = body.subarray(s.ivLength, body.length - icvLength);
  const icv = body.subarray(body.length - icvLength);
  let plain: Buffer;
  if (s.aead) {
    const opened = aeadOpen(
      s,
      keys.encrKey,
      iv,
      raw.subarray(0, skStart + PAYLOAD_HEADER_LENGTH),
      body.subarray(s.ivLength),
    );
    if (opened === null) return { ok: false, reason: 'integrity-check-failed' };
    plain = opened;
  } else {
    const expect = createHmac(keys.integ!.hash, keys.integKey!)
      .update(raw.subarray(0, raw.length - icvLength))
      .digest()
      .subarray(0, icvLength);
    if (!timingSafeEqual(expect, icv)) return { ok: false, reason: 'integrity-check-failed' };
    if (ct.length === 0 || ct.length % 16 !== 0) return { ok: false, reason: 'bad-padding' };
    plain = cbc(s, keys.encrKey, iv, ct, false);
  }
  const padLength = plain[plain.length - 1]!;
  if (padLength + 1 > plain.length) return { ok: false, reason: 'bad-padding' };
  return parsePayloadChain(last.firstInner, plain, 0, plain.length - 1 - padLength);
}
