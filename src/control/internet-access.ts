/**
 * Whether a full-tunnel member will reach the internet through the gateway, and if not, why and what to
 * change. A full-tunnel config sends everything into the tunnel; two things must then hold at the gateway:
 *   1. NAT egress (settings.natEgress): without it packets leave with the member's tunnel address, which no
 *      one outside routes back;
 *   2. the member firewall lets them out: an allow rule for one of the member's groups (or "*") to `any` or
 *      0.0.0.0/0 on every protocol, and no such deny rule; or the default policy `allow` and no such deny.
 * The CLI says so when it adds or prints such a member, and the gateway at start-up.
 */
import type { Policy, Settings } from './model.js';

function coversInternet(p: Policy): boolean {
  return (
    p.direction === 'send' &&
    (p.destination === 'any' || p.destination === '0.0.0.0/0') &&
    p.proto === 'any' &&
    p.ports === null
  );
}

/** What keeps a full-tunnel member in `groups` from the internet, each with what to run; empty when nothing. */
export function internetGaps(
  settings: Settings,
  policies: readonly Policy[],
  groups: readonly string[],
): string[] {
  const gaps: string[] = [];
  if (settings.natEgress === null)
    gaps.push(
      'NAT egress is off, so its packets would leave with its tunnel address and get no reply ' +
        '(set natEgress to the uplink interface: `weft apply -f` a state file with ' +
        '"settings: {natEgress: IFACE}", or PATCH /api/v1/settings)',
    );
  const applies = policies.filter((p) => (p.group === '*' || groups.includes(p.group)) && coversInternet(p));
  const denied = applies.some((p) => p.action === 'deny');
  const allowed =
    !denied && (settings.defaultPolicy === 'allow' || applies.some((p) => p.action === 'allow'));
  if (!allowed) {
    const who = groups[0] ?? "'*'";
    gaps.push(
      denied
        ? 'a deny rule to the whole internet applies to it (weft policy list)'
        : `no policy lets its traffic out and the default policy is deny (weft policy allow ${who} 0.0.0.0/0)`,
    );
  }
  return gaps;
}

/** One line for a person: empty when the member is split-tunnel or will reach the internet. */
export function internetWarning(
  name: string,
  fullTunnel: boolean,
  groups: readonly string[],
  settings: Settings,
  policies: readonly Policy[],
): string {
  if (!fullTunnel) return '';
  const gaps = internetGaps(settings, policies, groups);
  return gaps.length === 0 ? '' : `${name} is full-tunnel but will have no internet: ${gaps.join('; and ')}`;
}
