/**
 * Policies as readable rules: "allow eng → 10.20.0.0/24 tcp/443", and multicast receive rules as
 * "allow eng ← 239.1.0.0/16 (receive)". The CLI's forms are `weft policy allow eng 10.20.0.0/24:tcp/443`
 * (docs/people-vpn.md, "Policies") and `weft policy allow eng 239.1.0.0/16 --receive` (docs/multicast.md).
 */
import type { Policy, PortRange } from './types.js';

export function portsText(ports: PortRange | null): string {
  if (ports === null) return '';
  return ports.to === ports.from ? String(ports.from) : `${ports.from}-${ports.to}`;
}

/** "eng", or "everyone" for "*". */
export function groupText(group: string): string {
  return group === '*' ? 'everyone' : group;
}

/** "tcp/443", "udp", "icmp", or "" for any protocol on any port. */
export function protoText(p: Pick<Policy, 'proto' | 'ports'>): string {
  if (p.proto === 'any' && p.ports === null) return '';
  const ports = portsText(p.ports);
  return ports ? `${p.proto}/${ports}` : p.proto;
}

/** "→" for what the group sends, "←" for the multicast groups it receives. */
export function arrowText(p: Pick<Policy, 'direction'>): string {
  return p.direction === 'receive' ? '←' : '→';
}

export function policyText(p: Policy): string {
  const proto = protoText(p);
  const receive = p.direction === 'receive' ? ' (receive)' : '';
  return `${p.action} ${groupText(p.group)} ${arrowText(p)} ${p.destination}${proto ? ` ${proto}` : ''}${receive}`;
}

/**
 * "443" or "8000-8100" as a range; "" is no ports. Returns an error message for anything else, checked
 * here only for shape: the server judges the numbers (1-65535, from ≤ to) and names the field.
 */
export function parsePorts(text: string): PortRange | null | string {
  const t = text.trim();
  if (t === '') return null;
  const m = /^(\d{1,5})(?:\s*-\s*(\d{1,5}))?$/.exec(t);
  if (!m) return 'ports: a port (443) or a range (8000-8100)';
  const from = Number(m[1]);
  return { from, to: m[2] === undefined ? from : Number(m[2]) };
}
