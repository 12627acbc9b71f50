/**
 * Why a packet was dropped. Every path that discards input names one of these and the device counts it;
 * nothing hostile raises an exception and nothing unauthenticated is answered.
 */
export const DROP_REASONS = [
  // parsing (messages.ts)
  'too-short',
  'unknown-type',
  'bad-length',
  // handshake admission (cookie.ts, device.ts)
  'bad-mac1',
  'bad-mac2',
  'rate-limited',
  'no-private-key',
  /** The source address is over its handshake budget: dropped before any BLAKE2s work (paper §5.3). */
  'source-over-budget',
  /** The oldest waiting handshake message, pushed out of the full handshake queue by a newer one. */
  'handshake-queue-full',
  /** Under load, a message without a good mac2 that earned a cookie reply while cookie replies were spent. */
  'cookie-reply-limited',
  // handshake processing (handshake.ts)
  'handshake-decrypt-failed',
  'unknown-peer',
  'low-order-point',
  'replayed-timestamp',
  'initiation-flood',
  'unexpected-response',
  'unknown-receiver',
  'cookie-decrypt-failed',
  'unexpected-cookie',
  // transport (keypair.ts, device.ts)
  'key-expired',
  'counter-limit',
  'decrypt-failed',
  'replayed-counter',
  'bad-inner-packet',
  'disallowed-source',
  // outbound (device.ts)
  'no-route',
  'no-endpoint',
  'staged-overflow',
  'handshake-timeout',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export type DropCounters = Record<DropReason, number>;

export function newDropCounters(): DropCounters {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as DropCounters;
}
