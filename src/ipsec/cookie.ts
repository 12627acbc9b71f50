/**
 * Stateless cookies for a responder under load (RFC 7296 §2.6): once too many IKE SAs are half-open, an
 * IKE_SA_INIT request without a valid cookie is answered with only N(COOKIE) and no state is kept; the
 * initiator repeats its request with that cookie first, proving it receives at its address.
 *
 *   Cookie = <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>)
 *
 * The secret changes every COOKIE_SECRET_MS; cookies made with the one before are still accepted, so a
 * request in flight across a change is not refused twice.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import { parseAddress } from '../net/ip.js';
import { COOKIE_SECRET_MS } from './constants.js';

export class CookieJar {
  private version = 0;
  private secret: Buffer;
  private previous: Buffer | null = null;
  private changedAt: number;

  constructor(
    private readonly random: (n: number) => Buffer,
    now: number,
  ) {
    this.secret = Buffer.from(random(32));
    this.changedAt = now;
  }

  make(ni: Buffer, address: string, spiI: Buffer, now: number): Buffer {
    this.rotate(now);
    return Buffer.concat([Uint8Array.of(this.version), this.hash(this.secret, ni, address, spiI)]);
  }

  check(cookie: Buffer, ni: Buffer, address: string, spiI: Buffer, now: number): boolean {
    this.rotate(now);
    if (cookie.length !== 33) return false;
    const secret =
      cookie[0] === this.version
        ? this.secret
        : cookie[0] === ((this.version + 255) & 0xff)
          ? this.previous
          : null;
    if (secret === null) return false;
    return timingSafeEqual(cookie.subarray(1), this.hash(secret, ni, address, spiI));
  }

  private rotate(now: number): void {
    if (now - this.changedAt < COOKIE_SECRET_MS) return;
    this.previous = this.secret;
    this.secret = Buffer.from(this.random(32));
    this.version = (this.version + 1) & 0xff;
    this.changedAt = now;
  }

  private hash(secret: Buffer, ni: Buffer, address: string, spiI: Buffer): Buffer {
    const ip = parseAddress(address);
    const ipBytes = ip.ok ? Buffer.from(ip.value.bytes) : Buffer.from(address, 'utf8');
    return createHash('sha256').update(ni).update(ipBytes).update(spiI).update(secret).digest();
  }
}
