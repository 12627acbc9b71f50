/**
 * Traffic history (per-minute samples from the API) as evenly spaced buckets for a chart. A minute with no
 * sample moved no bytes: the gateway records only minutes with traffic (src/server/gateway-sync.ts).
 * `rx` is what the gateway received from members (in), `tx` what it sent to them (out).
 */
import type { TrafficSample } from './types.js';

export interface TrafficBuckets {
  /** The first bucket's start, ms since the epoch. */
  readonly start: number;
  readonly bucketMs: number;
  readonly rx: readonly number[];
  readonly tx: readonly number[];
  readonly totalRx: number;
  readonly totalTx: number;
}

export const DAY_MS = 24 * 60 * 60 * 1000;

export function bucketTraffic(
  samples: readonly TrafficSample[],
  since: number,
  until: number,
  bucketMs: number,
): TrafficBuckets {
  const start = Math.floor(since / bucketMs) * bucketMs;
  const n = Math.max(1, Math.ceil((until - start) / bucketMs));
  const rx = new Array<number>(n).fill(0);
  const tx = new Array<number>(n).fill(0);
  let totalRx = 0;
  let totalTx = 0;
  for (const s of samples) {
    const i = Math.floor((Date.parse(s.at) - start) / bucketMs);
    if (!(i >= 0 && i < n)) continue;
    rx[i] = (rx[i] ?? 0) + s.rxBytes;
    tx[i] = (tx[i] ?? 0) + s.txBytes;
    totalRx += s.rxBytes;
    totalTx += s.txBytes;
  }
  return { start, bucketMs, rx, tx, totalRx, totalTx };
}
