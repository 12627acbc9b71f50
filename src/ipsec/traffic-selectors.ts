/**
 * Traffic selectors (RFC 7296 §2.9, §3.13): building them from prefixes, and narrowing — the responder answers
 * with the part of the initiator's proposal that its own policy allows, which may be several ranges (several
 * subnets in one TS payload) or nothing at all (TS_UNACCEPTABLE).
 */
import { parsePrefix } from '../net/ip.js';
import { parseAddress, formatAddress } from '../net/ip.js';
import type { TrafficSelector } from './child-sa.js';

/** "10.1.0.0/16" (all protocols and ports), or null when the text is not a prefix. */
export function selectorFromPrefix(
  text: string,
  protocol = 0,
  startPort = 0,
  endPort = 65535,
): TrafficSelector | null {
  const p = parsePrefix(text);
  if (!p.ok) return null;
  const start = Buffer.from(p.value.bytes);
  const end = Buffer.from(p.value.bytes);
  for (let bit = p.value.bits; bit < end.length * 8; bit++) end[bit >> 3]! |= 0x80 >> (bit & 7);
  return {
    family: p.value.family,
    protocol,
    startPort,
    endPort,
    startAddress: formatAddress({ family: p.value.family, bytes: start }),
    endAddress: formatAddress({ family: p.value.family, bytes: end }),
  };
}

function bytes(text: string): Buffer {
  const a = parseAddress(text);
  return a.ok ? Buffer.from(a.value.bytes) : Buffer.alloc(0);
}

/** The intersection of two selectors, or null when they do not overlap. */
export function intersect(a: TrafficSelector, b: TrafficSelector): TrafficSelector | null {
  if (a.family !== b.family) return null;
  if (a.protocol !== 0 && b.protocol !== 0 && a.protocol !== b.protocol) return null;
  const startPort = Math.max(a.startPort, b.startPort);
  const endPort = Math.min(a.endPort, b.endPort);
  if (startPort > endPort) return null;
  const as = bytes(a.startAddress);
  const bs = bytes(b.startAddress);
  const ae = bytes(a.endAddress);
  const be = bytes(b.endAddress);
  const start = Buffer.compare(as, bs) >= 0 ? as : bs;
  const end = Buffer.compare(ae, be) <= 0 ? ae : be;
  if (start.length === 0 || Buffer.compare(start, end) > 0) return null;
  return {
    family: a.family,
    protocol: a.protocol !== 0 ? a.protocol : b.protocol,
    startPort,
    endPort,
    startAddress: formatAddress({ family: a.family, bytes: start }),
    endAddress: formatAddress({ family: a.family, bytes: end }),
  };
}

/** §2.9: every non-empty intersection of a proposed selector with a policy selector, without duplicates. */
export function narrow(
  proposed: readonly TrafficSelector[],
  policy: readonly TrafficSelector[],
): TrafficSelector[] {
  const out: TrafficSelector[] = [];
  for (const p of proposed) {
    for (const q of policy) {
      const r = intersect(p, q);
      if (r && !out.some((o) => sameSelector(o, r))) out.push(r);
    }
  }
  return out;
}

export function sameSelector(a: TrafficSelector, b: TrafficSelector): boolean {
  return (
    a.family === b.family &&
    a.protocol === b.protocol &&
    a.startPort === b.startPort &&
    a.endPort === b.endPort &&
    Buffer.compare(bytes(a.startAddress), bytes(b.startAddress)) === 0 &&
    Buffer.compare(bytes(a.endAddress), bytes(b.endAddress)) === 0
  );
}

/** Whether every selector in `inner` lies inside one selector of `outer` (an initiator checks the answer). */
export function within(inner: readonly TrafficSelector[], outer: readonly TrafficSelector[]): boolean {
  return inner.every((i) =>
    outer.some((o) => {
      const r = intersect(i, o);
      return r !== null && sameSelector(r, i);
    }),
  );
}

export function formatSelector(s: TrafficSelector): string {
  const range = s.startAddress === s.endAddress ? s.startAddress : `${s.startAddress}..${s.endAddress}`;
  const proto = s.protocol === 0 ? '' : `[${s.protocol}`;
  const ports =
    s.startPort === 0 && s.endPort === 65535 ? '' : `${proto ? '' : '['}/${s.startPort}-${s.endPort}`;
  return range + proto + ports + (proto || ports ? ']' : '');
}
