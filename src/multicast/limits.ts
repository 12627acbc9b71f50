/**
 * Rate limits for replication: token buckets per sending port and per group. A bucket holds at most
 * `burst` tokens and gains `rate` per second; a packet takes one. Buckets live in a bounded map (the least
 * recently touched one goes first), so hostile senders cannot grow it.
 */
import { MAX_BUCKETS } from './constants.js';

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets<K> {
  /** Packets refused, over all keys. */
  refused = 0;
  private readonly buckets = new Map<K, Bucket>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxBuckets = MAX_BUCKETS,
  ) {}

  /** Takes one token for `key` at `now` (ms); false (and counted) when the bucket is empty. */
  take(key: K, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
      if (this.buckets.size > this.maxBuckets) {
        const oldest = this.buckets.keys().next();
        if (!oldest.done) this.buckets.delete(oldest.value);
      }
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
      b.at = now;
    }
    if (b.tokens < 1) {
      this.refused++;
      return false;
    }
    b.tokens -= 1;
    return true;
  }

  forget(key: K): void {
    this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }
}
