/**
 * Token buckets for handshake messages (paper §5.3), as wireguard-go's ratelimiter: a steady rate with a
 * burst. RateLimiter keeps one bucket per source address (the device uses two: the budget checked before
 * mac1, and the stricter one checked under load once mac2 has proved the address); TokenBucket is one
 * bucket for a total (cookie replies). Every table here is bounded.
 */
import { parseAddress } from '../net/ip.js';
import { RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND } from './constants.js';

interface Bucket {
  tokens: number;
  at: number;
}

/** Source addresses tracked at most; past this, buckets that have refilled are forgotten (or all). */
export const MAX_TRACKED = 65_536;
/** IPv6 addresses whose /64 is remembered (see sourceOf). */
const PREFIX_CACHE_SIZE = 4096;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond = RATE_LIMIT_PER_SECOND,
    private readonly burst = RATE_LIMIT_BURST,
  ) {}

  /**
   * Takes a token from the bucket of `address` (an IPv4 or IPv6 address as text). IPv6 sources are counted
   * per /64, as wireguard-go does: one host commonly holds a whole /64, and would otherwise have 2^64 budgets.
   */
  allow(address: string, now: number): boolean {
    const source = address.includes(':') ? this.prefixOf(address) : address;
    let b = this.buckets.get(source);
    if (!b) {
      if (this.buckets.size >= MAX_TRACKED) this.sweep(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(source, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.perSecond) / 1000);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Source addresses tracked now (at most MAX_TRACKED). */
  get size(): number {
    return this.buckets.size;
  }

  private readonly prefixes = new Map<string, string>();

  /** The /64 of an IPv6 address, as 16 hex digits (the text itself if it does not parse). */
  private prefixOf(address: string): string {
    let prefix = this.prefixes.get(address);
    if (prefix === undefined) {
      const percent = address.indexOf('%');
      const parsed = parseAddress(percent < 0 ? address : address.slice(0, percent));
      prefix = parsed.ok ? Buffer.from(parsed.value.bytes.subarray(0, 8)).toString('hex') : address;
      if (this.prefixes.size >= PREFIX_CACHE_SIZE) this.prefixes.clear();
      this.prefixes.set(address, prefix);
    }
    return prefix;
  }

  /** Forgets buckets that have refilled completely; they behave exactly like new ones. */
  private sweep(now: number): void {
    const full = (this.burst * 1000) / this.perSecond;
    for (const [k, b] of this.buckets) if (now - b.at >= full) this.buckets.delete(k);
    if (this.buckets.size >= MAX_TRACKED) this.buckets.clear();
  }
}

/** One token bucket: `perSecond` on average, up to `burst` at once. */
export class TokenBucket {
  private tokens: number;
  private at = -Infinity;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  take(now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSecond) / 1000);
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
