/**
 * The Encrypted payload SK (RFC 7296 §3.14) for one direction of an IKE SA:
 *   - AES-CBC with an HMAC integrity transform: IV (16) | CBC(payloads | padding | pad length) | ICV, the ICV
 *     computed over the whole message from the IKE header to the end of the ciphertext;
 *   - AES-GCM-16 (RFC 5282) and ChaCha20-Poly1305 (RFC 7634): IV (8) | ciphertext | tag (16), nonce =
 *     salt (last 4 key bytes) | IV, associated data = the IKE header and the SK payload's generic header.
 * Opening checks the ICV before anything is decrypted or parsed; a failure is a typed reason.
 * The Encrypted Fragment payload SKF (RFC 7383 §2.5) is the same with Fragment Number and Total Fragments after
 * the generic header; each fragment carries a piece of the inner payload chain, sealed on its own.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

import type { EncrSuite, IntegSuite } from './algorithms.js';
import { ENCR, IKE_HEADER_LENGTH, PAYLOAD, PAYLOAD_HEADER_LENGTH, SKF_FIELDS_LENGTH } from './constants.js';
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
  return sealContent(h, PAYLOAD.SK, chain.first, Buffer.alloc(0), chain.bytes, keys, iv);
}

/**
 * Builds a protected message as one datagram when it fits in `maxLength` bytes (IKE header to ICV), or else
 * as Encrypted Fragment payloads (RFC 7383 §2.5): the inner payload chain is cut into pieces, each sealed on
 * its own with a fresh IV and the same header and message ID; fragment 1 names the first inner payload, the
 * others 0. `random` gives the IVs.
 */
export function sealFragments(
  h: Omit<IkeHeader, 'nextPayload'>,
  inner: readonly Payload[],
  keys: SkKeys,
  random: (n: number) => Buffer,
  maxLength: number,
): Buffer[] {
  const chain = encodeChain(inner);
  const s = keys.encr;
  const whole = sealContent(
    h,
    PAYLOAD.SK,
    chain.first,
    Buffer.alloc(0),
    chain.bytes,
    keys,
    random(s.ivLength),
  );
  if (whole.length <= maxLength) return [whole];
  const icvLength = s.aead ? s.tagLength : keys.integ!.icvLength;
  const fixed = IKE_HEADER_LENGTH + PAYLOAD_HEADER_LENGTH + SKF_FIELDS_LENGTH + s.ivLength + icvLength;
  // The content plus the pad length byte; CBC also pads to whole blocks.
  const room = s.aead ? maxLength - fixed - 1 : Math.floor((maxLength - fixed) / CBC_BLOCK) * CBC_BLOCK - 1;
  if (room < 1) return [whole];
  const total = Math.ceil(chain.bytes.length / room);
  const out: Buffer[] = [];
  for (let i = 0; i < total; i++) {
    const piece = chain.bytes.subarray(i * room, (i + 1) * room);
    out.push(sealFragment(h, i === 0 ? chain.first : 0, i + 1, total, piece, keys, random(s.ivLength)));
  }
  return out;
}

/** One Encrypted Fragment payload message carrying `piece` as fragment `number` of `total` (RFC 7383 §2.5). */
export function sealFragment(
  h: Omit<IkeHeader, 'nextPayload'>,
  firstInner: number,
  number: number,
  total: number,
  piece: Buffer,
  keys: SkKeys,
  iv: Buffer,
): Buffer {
  const fields = Buffer.alloc(SKF_FIELDS_LENGTH);
  fields.writeUInt16BE(number, 0);
  fields.writeUInt16BE(total, 2);
  return sealContent(h, PAYLOAD.SKF, firstInner, fields, piece, keys, iv);
}

const CBC_BLOCK = 16;

/**
 * Seals `content` into a message whose only payload is SK or SKF (`fields` are SKF's Fragment Number and
 * Total Fragments, empty for SK). The AEAD's associated data, like the HMAC, covers the IKE header and the
 * payload's unencrypted header, those fields included (RFC 5282 §5.1, RFC 7383 §2.5).
 */
function sealContent(
  h: Omit<IkeHeader, 'nextPayload'>,
  type: number,
  next: number,
  fields: Buffer,
  content: Buffer,
  keys: SkKeys,
  iv: Buffer,
): Buffer {
  const s = keys.encr;
  let padLength = 0;
  if (!s.aead) padLength = (CBC_BLOCK - ((content.length + 1) % CBC_BLOCK)) % CBC_BLOCK;
  const plain = Buffer.concat([content, Buffer.alloc(padLength), Uint8Array.of(padLength)]);
  const icvLength = s.aead ? s.tagLength : keys.integ!.icvLength;
  const skLength = PAYLOAD_HEADER_LENGTH + fields.length + s.ivLength + plain.length + icvLength;
  const total = IKE_HEADER_LENGTH + skLength;
  const header = encodeHeader(h, type, total);
  const skHeader = Buffer.alloc(PAYLOAD_HEADER_LENGTH + fields.length);
  skHeader[0] = next;
  skHeader.writeUInt16BE(skLength, 2);
  fields.copy(skHeader, PAYLOAD_HEADER_LENGTH);
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
  const plain = openContent(msg.raw, last.body, PAYLOAD_HEADER_LENGTH, keys);
  if (!plain.ok) return plain;
  return parsePayloadChain(last.firstInner, plain.value, 0, plain.value.length);
}

/**
 * Verifies and decrypts one Encrypted Fragment payload (the last payload of `msg`, RFC 7383 §2.6: each fragment
 * is authenticated on its own before it is kept). Returns its piece of the inner payload chain.
 */
export function openFragment(msg: IkeMessage, keys: SkKeys): Parsed<Buffer> {
  const last = msg.payloads[msg.payloads.length - 1];
  if (last === undefined || last.kind !== 'skf') return { ok: false, reason: 'missing-payload' };
  return openContent(msg.raw, last.body, PAYLOAD_HEADER_LENGTH + SKF_FIELDS_LENGTH, keys);
}

/**
 * `body` (IV..ICV) ends `raw` and follows a payload header of `headerLength` bytes. Checks the ICV before
 * anything is decrypted; returns the content without its padding.
 */
function openContent(raw: Buffer, body: Buffer, headerLength: number, keys: SkKeys): Parsed<Buffer> {
  const s = keys.encr;
  const skStart = raw.length - body.length - headerLength;
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
      raw.subarray(0, skStart + headerLength),
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
    if (ct.length === 0 || ct.length % CBC_BLOCK !== 0) return { ok: false, reason: 'bad-padding' };
    plain = cbc(s, keys.encrKey, iv, ct, false);
  }
  if (plain.length === 0) return { ok: false, reason: 'bad-padding' };
  const padLength = plain[plain.length - 1]!;
  if (padLength + 1 > plain.length) return { ok: false, reason: 'bad-padding' };
  return { ok: true, value: plain.subarray(0, plain.length - 1 - padLength) };
}
