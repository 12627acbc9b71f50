/**
 * Policies as readable rules: "allow eng → 10.20.0.0/24 tcp/443". The CLI's form is
 * `weft policy allow eng 10.20.0.0/24:tcp/443` (docs/people-vpn.md, "Policies").
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

export function policyText(p: Policy): string {
  const proto = protoText(p);
  return `${p.action} ${groupText(p.group)} → ${p.destination}${proto ? ` ${proto}` : ''}`;
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
