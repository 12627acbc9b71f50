/**
 * What Weft pushes to a member's OpenVPN client: the same addresses, routes and DNS a WireGuard member's
 * config carries (ControlPlane.memberAllowedIps decides both), in OpenVPN's words.
 *
 * - `topology subnet`, `ifconfig` with the member's fixed IPv4 address and the member subnet's netmask, and
 *   `ifconfig-ipv6` with its IPv6 address when the network has an IPv6 subnet: the member subnet is then
 *   on-link, as it is for a WireGuard member;
 * - a full-tunnel member (or one whose policy reaches "any") gets `redirect-gateway def1` (and `ipv6` when
 *   the IPv6 default goes through the tunnel too); everyone else gets one `route` per prefix its policies
 *   reach beyond the member subnet (shared subnets behind the gateway);
 * - with multicast on, the groups' ranges (224.0.0.0/4, ff00::/8) are among those routes, so the client
 *   sends to groups (and its IGMP/MLD) into the tunnel;
 * - DNS servers from the settings; keepalive: a ping every 10 s, restart after 60 s without one. On a shared
 *   store (several gateways, perhaps a failover pair) a ping every second and a restart after 5 s: a member
 *   whose gateway died restarts in 5 s and dials the next `remote` of its profile (the shared address, now on
 *   another gateway, or another gateway's own), where the default 60 s would leave it cut off for a minute.
 */
import type { ControlPlane } from '../control/control-plane.js';
import type { MemberRecord } from '../control/model.js';
import { formatAddress, parsePrefix, prefixContains, type Prefix } from '../net/ip.js';
import type { PushDescription } from '../openvpn/control-session.js';
import type { Route4 } from '../openvpn/push.js';

/** Seconds: the client pings after 10 s of silence and restarts after 60 s without hearing the server. */
export const OPENVPN_PING_SECONDS = 10;
export const OPENVPN_PING_RESTART_SECONDS = 60;
/** The same on a shared store (the gateways' own pings follow OPENVPN_SHARED_PING_SECONDS, openvpn.ts). */
export const OPENVPN_SHARED_PING_SECONDS = 1;
export const OPENVPN_SHARED_PING_RESTART_SECONDS = 5;

/** Whether the control plane's store is the shared PostgreSQL one (isSyncPostgresStore's test, written out). */
export function onSharedStore(cp: ControlPlane): boolean {
  return (cp.store as { kind?: unknown }).kind === 'postgres';
}

function netmask(bits: number): string {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (mask >>> shift) & 0xff).join('.');
}

function prefix(text: string): Prefix | undefined {
  const p = parsePrefix(text);
  return p.ok ? p.value : undefined;
}

/** Whether `inner` lies wholly inside `outer`. */
function covers(outer: Prefix, inner: Prefix): boolean {
  return outer.bits <= inner.bits && prefixContains(outer, inner);
}

const LINK_LOCAL_6 = prefix('fe80::/10')!;

export function openVpnPushFor(cp: ControlPlane, member: MemberRecord): PushDescription {
  const settings = cp.settings();
  const gateway = cp.gatewayAddresses();
  const subnet = prefix(settings.subnet);
  const subnet6 = settings.subnet6 ? prefix(settings.subnet6) : undefined;
  if (!subnet) throw new Error(`stored subnet ${settings.subnet} is invalid`);
  const allowed = cp.memberAllowedIps(member);
  const routes: Route4[] = [];
  const routesIpv6: string[] = [];
  let redirect4 = false;
  let redirect6 = false;
  for (const text of allowed) {
    const p = prefix(text);
    if (!p) continue;
    if (p.bits === 0) {
      if (p.family === 4) redirect4 = true;
      else redirect6 = true;
      continue;
    }
    const onLink = p.family === 4 ? covers(subnet, p) : subnet6 !== undefined && covers(subnet6, p);
    // Link-local (the gateway's fe80::1, source of MLD queries) is on the tunnel's link by definition.
    if (onLink || covers(LINK_LOCAL_6, p)) continue;
    if (p.family === 4) routes.push({ network: formatAddress(p), netmask: netmask(p.bits) });
    else routesIpv6.push(`${formatAddress(p)}/${p.bits}`);
  }
  const push: PushDescription = {
    topology: 'subnet',
    ifconfig: { address: member.ip, netmask: netmask(subnet.bits) },
    ...(member.ip6 && subnet6 && gateway.ip6
      ? { ifconfigIpv6: { address: member.ip6, prefixLength: subnet6.bits, gateway: gateway.ip6 } }
      : {}),
    routeGateway: gateway.ip,
    ...(routes.length > 0 ? { routes } : {}),
    ...(routesIpv6.length > 0 ? { routesIpv6 } : {}),
    ...(redirect4 ? { redirectGateway: { ipv6: redirect6 } } : {}),
    ...(settings.dns.length > 0 ? { dns: settings.dns } : {}),
    tunMtu: settings.mtu,
    ...(onSharedStore(cp)
      ? { ping: OPENVPN_SHARED_PING_SECONDS, pingRestart: OPENVPN_SHARED_PING_RESTART_SECONDS }
      : { ping: OPENVPN_PING_SECONDS, pingRestart: OPENVPN_PING_RESTART_SECONDS }),
  };
  return push;
}
