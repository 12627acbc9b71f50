/**
 * Time-based one-time passwords for the console's second factor: RFC 6238 TOTP over RFC 4226 HOTP, with the
 * parameters every authenticator app takes by default (HMAC-SHA-1, 6 digits, 30-second steps from the Unix
 * epoch), the secret in RFC 4648 base32 as those apps expect it, and the `otpauth://` URI they scan.
 *
 * Pure functions: the time comes in as a parameter (milliseconds), randomness only in `newTotpSecret`.
 * Replay protection (a code is good once) needs memory of the last step used, which the caller keeps
 * (ControlPlane, per account): `verifyTotp` returns the step it matched and refuses steps up to `afterStep`.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { sameSecret } from './secrets.js';

/** RFC 6238 section 4.1: X, the time step; 30 s is the recommended default. */
export const TOTP_STEP_SECONDS = 30;
/** RFC 4226 section 5.3: at least 6 digits; what authenticator apps show. */
export const TOTP_DIGITS = 6;
/**
 * RFC 6238 section 5.2: accept codes of up to this many steps before or after the current one, for clock drift
 * between the phone and the server and for the seconds a person needs to type the code.
 */
export const TOTP_WINDOW = 1;
/** RFC 4226 section 4 (R6): a shared secret of at least 128 bits; 160 bits is the HMAC-SHA-1 output size. */
export const TOTP_SECRET_BYTES = 20;

// ---- RFC 4648 section 6: base32 ----

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** Base32 of `bytes` (RFC 4648 section 6), with `=` padding to a multiple of 8 characters unless told not to. */
export function base32Encode(bytes: Uint8Array, pad = true): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const b of bytes) {
    buffer = ((buffer << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(buffer << (5 - bits)) & 31];
  if (pad) while (out.length % 8 !== 0) out += '=';
  return out;
}

/**
 * Bytes of a base32 text; case, spaces and trailing padding are forgiven (people copy secrets by hand, and
 * apps show them in groups of four). Undefined for anything else, including non-zero bits left over at the
 * end (RFC 4648 section 3.5: such text is not canonical).
 */
export function base32Decode(text: string): Uint8Array | undefined {
  const clean = text.replace(/\s+/g, '').toUpperCase().replace(/=+$/, '');
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const c of clean) {
    const v = BASE32_ALPHABET.indexOf(c);
    if (v < 0) return undefined;
    buffer = ((buffer << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  // 5 or more bits left means a character too many; fewer must all be zero.
  if (bits >= 5 || (buffer & ((1 << bits) - 1)) !== 0) return undefined;
  return Uint8Array.from(out);
}

// ---- RFC 4226: HOTP; RFC 6238: TOTP ----

export type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512';

export interface TotpOptions {
  readonly digits?: number;
  readonly stepSeconds?: number;
  readonly algorithm?: TotpAlgorithm;
}

/** RFC 4226 section 5.3: HMAC of the 8-byte big-endian counter, dynamic truncation, modulo 10^digits. */
export function hotp(
  key: Uint8Array,
  counter: bigint,
  digits: number = TOTP_DIGITS,
  algorithm: TotpAlgorithm = 'sha1',
): string {
  if (!Number.isInteger(digits) || digits < 6 || digits > 10)
    throw new RangeError(`hotp: digits must be from 6 to 10 (got ${digits})`);
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt.asUintN(64, counter));
  const mac = createHmac(algorithm, key).update(message).digest();
  // The low 4 bits of the last byte pick where the 31-bit code starts.
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** RFC 6238 section 4.2: T = floor((unix time - T0) / X), with T0 = 0. */
export function totpStep(timeMs: number, stepSeconds: number = TOTP_STEP_SECONDS): bigint {
  return BigInt(Math.floor(timeMs / 1000 / stepSeconds));
}

/** The code for the step `timeMs` falls in. */
export function totp(key: Uint8Array, timeMs: number, options: TotpOptions = {}): string {
  return hotp(key, totpStep(timeMs, options.stepSeconds), options.digits, options.algorithm);
}

export interface VerifyOptions extends TotpOptions {
  /** Steps accepted either side of the current one (default TOTP_WINDOW). */
  readonly window?: number;
  /** Steps up to and including this one are refused: the last step a code was accepted for (replay). */
  readonly afterStep?: bigint;
}

/**
 * The step `code` is the code of, among the current step ± window (the earliest that matches), or undefined.
 * Every candidate is computed and compared in constant time, so the answer takes as long whichever matched.
 */
export function verifyTotp(
  key: Uint8Array,
  code: string,
  timeMs: number,
  options: VerifyOptions = {},
): bigint | undefined {
  const digits = options.digits ?? TOTP_DIGITS;
  const normalized = code.replace(/\s+/g, '');
  if (!/^\d+$/.test(normalized) || normalized.length !== digits) return undefined;
  const window = BigInt(options.window ?? TOTP_WINDOW);
  const now = totpStep(timeMs, options.stepSeconds);
  let matched: bigint | undefined;
  for (let step = now - window; step <= now + window; step++) {
    if (step < 0n) continue;
    const ok = sameSecret(hotp(key, step, digits, options.algorithm), normalized);
    if (ok && matched === undefined && (options.afterStep === undefined || step > options.afterStep))
      matched = step;
  }
  return matched;
}

// ---- secrets and the provisioning URI ----

/** A new secret: TOTP_SECRET_BYTES random bytes in base32, without padding (32 characters). */
export function newTotpSecret(): string {
  return base32Encode(randomBytes(TOTP_SECRET_BYTES), false);
}

/** The key a stored or typed base32 secret stands for; throws on text that is not base32. */
export function totpKey(secret: string): Uint8Array {
  const key = base32Decode(secret);
  if (key === undefined || key.length === 0) throw new Error('the TOTP secret is not base32');
  return key;
}

/**
 * The Key Uri Format authenticator apps scan (Google Authenticator's `otpauth://totp/ISSUER:ACCOUNT?...`):
 * the issuer both as the label's prefix and as a parameter, as the format recommends. Algorithm, digits and
 * period are left out because ours are the defaults every app assumes.
 */
export function otpauthUrl(secret: string, account: string, issuer = 'Weft'): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  return `otpauth://totp/${label}?secret=${secret}&issuer=${encodeURIComponent(issuer)}`;
}
