/**
 * Key types. Each is created only through a length-checking constructor; private and preshared keys never
 * print themselves (inspect and JSON show a redaction), and comparisons are constant-time.
 *
 * The text form is WireGuard's: standard base64 of exactly 32 bytes (44 characters ending in one `=`),
 * as `wg genkey`, `wg pubkey` and `wg genpsk` print it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { clamp, publicFromPrivate } from './x25519.js';

export const KEY_LENGTH = 32;
const KEY_BASE64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export type KeyParseResult<K> = { ok: true; key: K } | { ok: false; error: string };

function decodeKey(text: string): Uint8Array | string {
  const t = text.trim();
  if (!KEY_BASE64.test(t)) return 'a key must be 44 characters of base64 encoding 32 bytes';
  return new Uint8Array(Buffer.from(t, 'base64'));
}

function encodeKey(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

abstract class Key {
  protected constructor(readonly bytes: Uint8Array) {
    if (bytes.length !== KEY_LENGTH)
      throw new RangeError(`key must be ${KEY_LENGTH} bytes, got ${bytes.length}`);
  }
  equals(other: Key): boolean {
    return timingSafeEqual(this.bytes, other.bytes);
  }
  isZero(): boolean {
    let acc = 0;
    for (const b of this.bytes) acc |= b;
    return acc === 0;
  }
  toBase64(): string {
    return encodeKey(this.bytes);
  }
}

abstract class SecretKey extends Key {
  toJSON(): string {
    return '(redacted)';
  }
  override toString(): string {
    return '(redacted)';
  }
  [inspect.custom](): string {
    return `${this.constructor.name}(redacted)`;
  }
}

export class PublicKey extends Key {
  static fromBytes(bytes: Uint8Array): PublicKey {
    return new PublicKey(Uint8Array.from(bytes));
  }
  static parse(text: string): KeyParseResult<PublicKey> {
    const b = decodeKey(text);
    return typeof b === 'string' ? { ok: false, error: b } : { ok: true, key: new PublicKey(b) };
  }
  toJSON(): string {
    return this.toBase64();
  }
  override toString(): string {
    return this.toBase64();
  }
  [inspect.custom](): string {
    return `PublicKey(${this.toBase64()})`;
  }
}

export class PrivateKey extends SecretKey {
  private cachedPublic: PublicKey | undefined;
  /** A fresh random Curve25519 private key, clamped as `wg genkey` stores it. */
  static generate(random: (n: number) => Uint8Array = randomBytes): PrivateKey {
    return new PrivateKey(clamp(Uint8Array.from(random(KEY_LENGTH))));
  }
  static fromBytes(bytes: Uint8Array): PrivateKey {
    return new PrivateKey(Uint8Array.from(bytes));
  }
  static parse(text: string): KeyParseResult<PrivateKey> {
    const b = decodeKey(text);
    return typeof b === 'string' ? { ok: false, error: b } : { ok: true, key: new PrivateKey(b) };
  }
  publicKey(): PublicKey {
    this.cachedPublic ??= PublicKey.fromBytes(publicFromPrivate(this.bytes));
    return this.cachedPublic;
  }
}

export class PresharedKey extends SecretKey {
  static generate(random: (n: number) => Uint8Array = randomBytes): PresharedKey {
    return new PresharedKey(Uint8Array.from(random(KEY_LENGTH)));
  }
  static fromBytes(bytes: Uint8Array): PresharedKey {
    return new PresharedKey(Uint8Array.from(bytes));
  }
  static parse(text: string): KeyParseResult<PresharedKey> {
    const b = decodeKey(text);
    return typeof b === 'string' ? { ok: false, error: b } : { ok: true, key: new PresharedKey(b) };
  }
  static zero(): PresharedKey {
    return new PresharedKey(new Uint8Array(KEY_LENGTH));
  }
}
