/**
 * Traffic selectors compiled for the data plane (RFC 7296 §3.13.1, RFC 4301 §5.2 step 4): after a tunnel-mode
 * packet is opened, its inner source must lie in the peer's selectors and its destination in ours, so a peer
 * cannot use the SA to inject traffic for networks it was not given.
 *
 * Addresses compare as big-endian byte strings. Ports are checked for TCP, UDP and SCTP when the packet is
 * not a later fragment (where they are absent); other protocols only match selectors with the full port
 * range's meaning of "any".
 */
import type { TrafficSelector } from './child-sa.js';
import { parseAddress } from '../net/ip.js';

export interface CompiledSelector {
  readonly family: 4 | 6;
  readonly protocol: number;
  readonly startPort: number;
  readonly endPort: number;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
}

export function compileSelectors(selectors: readonly TrafficSelector[]): CompiledSelector[] {
  return selectors.map((s) => {
    const start = parseAddress(s.startAddress);
    const end = parseAddress(s.endAddress);
    if (!start.ok || !end.ok || start.value.family !== s.family || end.value.family !== s.family)
      throw new RangeError(`bad traffic selector ${s.startAddress}-${s.endAddress}`);
    return {
      family: s.family,
      protocol: s.protocol,
      startPort: s.startPort,
      endPort: s.endPort,
      start: start.value.bytes,
      end: end.value.bytes,
    };
  });
}

function compare(a: Uint8Array, aAt: number, b: Uint8Array, length: number): number {
  for (let i = 0; i < length; i++) {
    const d = a[aAt + i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

const PORTED = new Set([6, 17, 132]);

/** The inner packet's protocol and ports, where the header says them plainly. */
function transport(packet: Uint8Array): { protocol: number; ports: number } {
  const version = packet[0]! >> 4;
  let protocol: number;
  let at: number;
  let firstFragment = true;
  if (version === 4) {
    protocol = packet[9]!;
    at = (packet[0]! & 0x0f) * 4;
    firstFragment = (((packet[6]! & 0x1f) << 8) | packet[7]!) === 0;
  } else {
    protocol = packet[6]!;
    at = 40;
  }
  if (!firstFragment || !PORTED.has(protocol) || packet.length < at + 4) return { protocol, ports: -1 };
  return { protocol, ports: at };
}

function inRange(packet: Uint8Array, at: number, s: CompiledSelector, length: number): boolean {
  return compare(packet, at, s.start, length) >= 0 && compare(packet, at, s.end, length) <= 0;
}

/**
 * Whether the inner packet (a complete IPv4/IPv6 header already checked by the caller) has its source in
 * `sources` and its destination in `destinations`, with matching protocol and ports.
 */
export function selectorsAdmit(
  packet: Uint8Array,
  sources: readonly CompiledSelector[],
  destinations: readonly CompiledSelector[],
): boolean {
  const family = packet[0]! >> 4 === 4 ? 4 : 6;
  const length = family === 4 ? 4 : 16;
  const srcAt = family === 4 ? 12 : 8;
  const dstAt = family === 4 ? 16 : 24;
  const t = transport(packet);
  const matches = (list: readonly CompiledSelector[], addrAt: number, portAt: number): boolean => {
    for (const s of list) {
      if (s.family !== family || !inRange(packet, addrAt, s, length)) continue;
      if (s.protocol !== 0 && s.protocol !== t.protocol) continue;
      if (s.startPort === 0 && s.endPort === 0xffff) return true;
      if (t.ports < 0) continue;
      const port = (packet[t.ports + portAt]! << 8) | packet[t.ports + portAt + 1]!;
      if (port >= s.startPort && port <= s.endPort) return true;
    }
    return false;
  };
  return matches(sources, srcAt, 0) && matches(destinations, dstAt, 2);
}
