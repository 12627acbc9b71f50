/**
 * The gateway host's uplink networks, as the kernel sees them now, for the control plane's route checks
 * (ControlPlane's `uplinks` option): the subnets of the interfaces that hold a default route (IPv4 and IPv6)
 * and of the interface that holds the endpoint's address, when the endpoint is an address.
 *
 * Read from /proc/net/route and /proc/net/ipv6_route (the routing tables) and os.networkInterfaces() (the
 * addresses); a host without them (not Linux, a restricted container) has no known uplink, so no route is
 * refused for it.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { HostNetwork } from '../control/validate.js';
import { formatPrefix, parseAddress, parsePrefix, sameAddress } from '../net/ip.js';

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Interfaces with a default route (destination and mask 0 in IPv4, ::/0 in IPv6). */
export function defaultRouteInterfaces(
  route4: readonly string[] = readLines('/proc/net/route'),
  route6: readonly string[] = readLines('/proc/net/ipv6_route'),
): Set<string> {
  const out = new Set<string>();
  for (const line of route4.slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === '00000000' && f[7] === '00000000') out.add(f[0]!);
  }
  for (const line of route6) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && /^0{32}$/.test(f[0]!) && f[1] === '00') out.add(f[9]!);
  }
  return out;
}

/** The uplink networks of this host now (see the file's comment). */
export function hostUplinks(endpointHost: string): HostNetwork[] {
  const interfaces = networkInterfaces();
  const endpoint = parseAddress(endpointHost);
  const uplinks = defaultRouteInterfaces();
  const out = new Map<string, HostNetwork>();
  for (const [name, addresses] of Object.entries(interfaces)) {
    for (const a of addresses ?? []) {
      if (a.internal || a.cidr === null) continue;
      const own = parseAddress(a.address);
      const holdsEndpoint = endpoint.ok && own.ok && sameAddress(endpoint.value, own.value);
      if (!uplinks.has(name) && !holdsEndpoint) continue;
      const p = parsePrefix(a.cidr);
      // Link-local networks are refused as routes anyway; naming them as uplinks would only confuse.
      if (!p.ok || (p.value.family === 6 && p.value.bytes[0] === 0xfe && (p.value.bytes[1]! & 0xc0) === 0x80))
        continue;
      const text = formatPrefix(p.value);
      out.set(text, { interface: name, prefix: text });
    }
  }
  return [...out.values()];
}
