/**
 * Per-source token buckets for handshake messages while the device is under load (after mac2 has proved
 * the source address), as wireguard-go's ratelimiter does: a steady rate with a small burst per address.
 */
import { RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND } from './constants.js';

interface Bucket {
  tokens: number;
  at: number;
}

const MAX_TRACKED = 65_536;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond = RATE_LIMIT_PER_SECOND,
    private readonly burst = RATE_LIMIT_BURST,
  ) {}

  allow(source: string, now: number): boolean {
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

  /** Forgets buckets that have refilled completely; they behave exactly like new ones. */
  private sweep(now: number): void {
    const full = (this.burst * 1000) / this.perSecond;
    for (const [k, b] of this.buckets) if (now - b.at >= full) this.buckets.delete(k);
    if (this.buckets.size >= MAX_TRACKED) this.buckets.clear();
  }
}
