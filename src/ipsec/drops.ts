/**
 * Why an IKE datagram was dropped. Every path that discards input names one of these and the core counts it;
 * nothing hostile raises an exception, and nothing unauthenticated is answered beyond what RFC 7296 requires
 * (IKE_SA_INIT responses, including NO_PROPOSAL_CHOSEN and INVALID_KE_PAYLOAD).
 */
export const IKE_DROP_REASONS = [
  // framing (core.ts)
  'natt-keepalive',
  'esp-on-ike-port',
  // parsing (messages.ts)
  'too-short',
  'bad-length',
  'ikev1-not-supported',
  'bad-version',
  'bad-payload-length',
  'bad-payload',
  'unsupported-critical-payload',
  'sk-not-last',
  // dispatch (core.ts)
  'unknown-exchange',
  'unknown-spi',
  'unexpected-message-id',
  'unexpected-response',
  'unexpected-request',
  'half-open-limit',
  'wrong-role',
  // IKE_SA_INIT (ike-sa.ts)
  'missing-payload',
  'bad-nonce',
  'bad-ke',
  'retransmitted-request',
  // protected messages
  'integrity-check-failed',
  'bad-padding',
  'sa-closed',
  // fragments (RFC 7383, ike-sa.ts)
  'fragmentation-not-negotiated',
  'bad-fragment-number',
  'too-many-fragments',
  'duplicate-fragment',
  'stale-fragment',
  'reassembly-too-large',
] as const;

export type IkeDropReason = (typeof IKE_DROP_REASONS)[number];
export type IkeDropCounters = Record<IkeDropReason, number>;

export function newIkeDropCounters(): IkeDropCounters {
  return Object.fromEntries(IKE_DROP_REASONS.map((r) => [r, 0])) as IkeDropCounters;
}
