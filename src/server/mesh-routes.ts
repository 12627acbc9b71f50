/**
 * The mesh's routing decision, pure: from the registered gateways and where each member's session is (the
 * status row of the gateway holding it), which mesh peers this gateway has and which member addresses it
 * routes to each.
 *
 * 1. Peers: every registered gateway but this one (by name; a registration with this gateway's own key is
 *    left out, since a device never peers with itself).
 * 2. Routes: a member online on another gateway, not online here, is routed to that gateway's peer as its
 *    addresses (/32, /128). The same prefixes are the peer's AllowedIPs, so a packet from that peer whose
 *    inner source is not an address of a member it holds is dropped by the WireGuard device (paper §2).
 * 3. A shared route or a site's remote subnet served by another gateway (its `gateway` field) is routed to
 *    that gateway's peer and is in its AllowedIPs (the replies from behind it come from there); one served by
 *    this gateway, or by every gateway, is left to this gateway's host (or its own IPsec site).
 * 4. A gateway the database has not heard from for `silentAfterMs` gets no routes: its members are left to
 *    reach this gateway (or another) themselves, and their packets are not sent into a dead peer.
 */
import { parsePrefix, type Prefix } from '../net/ip.js';
import { meshEndpoint } from '../control/gateway-registration.js';

export interface MeshGatewayInput {
  readonly name: string;
  readonly endpoint: string;
  readonly publicKey: string;
  readonly meshPort: number | null;
  /** Milliseconds since the database last heard from it. */
  readonly silentMs: number;
}

export interface MeshLocationInput {
  readonly name: string;
  readonly gateway: string;
  readonly ip: string;
  readonly ip6: string | null;
}

export interface MeshPeerPlan {
  readonly name: string;
  readonly publicKey: string;
  /** Where its mesh interface listens (host as registered; resolved by the caller); null: unusable. */
  readonly host: string | null;
  readonly port: number;
  /** The member addresses it holds, routed to it (and its AllowedIPs). */
  readonly prefixes: readonly Prefix[];
  readonly members: readonly string[];
  /** Of `prefixes`, the shared routes and site subnets it serves (step 3). */
  readonly owned: readonly Prefix[];
}

/** A prefix one gateway serves: a shared route's, or a remote subnet of an enabled tunnel-mode site. */
export interface OwnedPrefixInput {
  readonly gateway: string;
  readonly prefix: string;
}

export interface MeshPlanInput {
  readonly self: string;
  readonly selfPublicKey: string;
  /** The network's listen port (the mesh port of registrations without one is this + 1). */
  readonly listenPort: number;
  readonly gateways: readonly MeshGatewayInput[];
  readonly locations: readonly MeshLocationInput[];
  /** Whether the member's session is on this gateway (then its addresses stay local). */
  readonly isLocal: (member: string) => boolean;
  readonly silentAfterMs: number;
  /** Shared routes and site subnets that name the gateway serving them (step 3). */
  readonly owned?: readonly OwnedPrefixInput[];
}

export interface MeshPlan {
  readonly peers: readonly MeshPeerPlan[];
  /** Every prefix routed into the mesh (the union of the peers' prefixes). */
  readonly routes: readonly Prefix[];
  /**
   * The served prefixes routed to another gateway: outside the member subnet, so the host must route them
   * into the gateway's TUN device for the router to see them.
   */
  readonly owned: readonly Prefix[];
}

/** Shared routes and sites as the store has them, to the prefixes each names a serving gateway for. */
export function ownedPrefixes(
  routes: readonly { cidr: string; gateway?: string }[],
  sites: readonly { enabled: boolean; mode: string; remoteSubnets: readonly string[]; gateway?: string }[],
): OwnedPrefixInput[] {
  const out: OwnedPrefixInput[] = [];
  for (const r of routes) if (r.gateway !== undefined) out.push({ gateway: r.gateway, prefix: r.cidr });
  for (const site of sites)
    if (site.gateway !== undefined && site.enabled && site.mode === 'tunnel')
      for (const prefix of site.remoteSubnets) out.push({ gateway: site.gateway, prefix });
  return out;
}

function hostPrefix(text: string | null, bits: 32 | 128): Prefix | undefined {
  if (text === null) return undefined;
  const p = parsePrefix(`${text}/${bits}`);
  return p.ok ? p.value : undefined;
}

export function planMesh(input: MeshPlanInput): MeshPlan {
  const peers = new Map<
    string,
    {
      name: string;
      publicKey: string;
      host: string | null;
      port: number;
      live: boolean;
      prefixes: Prefix[];
      members: string[];
      owned: Prefix[];
    }
  >();
  for (const g of input.gateways) {
    if (g.name === input.self || g.publicKey === input.selfPublicKey) continue;
    let host: string | null = null;
    let port = 0;
    try {
      ({ host, port } = meshEndpoint(g, input.listenPort));
    } catch {
      host = null;
    }
    peers.set(g.name, {
      name: g.name,
      publicKey: g.publicKey,
      host,
      port,
      live: g.silentMs < input.silentAfterMs,
      prefixes: [],
      members: [],
      owned: [],
    });
  }
  const routes: Prefix[] = [];
  for (const loc of input.locations) {
    if (loc.gateway === input.self || input.isLocal(loc.name)) continue;
    const peer = peers.get(loc.gateway);
    if (peer === undefined || !peer.live) continue;
    const v4 = hostPrefix(loc.ip, 32);
    const v6 = hostPrefix(loc.ip6, 128);
    if (v4 === undefined) continue;
    peer.members.push(loc.name);
    peer.prefixes.push(v4);
    routes.push(v4);
    if (v6 !== undefined) {
      peer.prefixes.push(v6);
      routes.push(v6);
    }
  }
  const owned: Prefix[] = [];
  for (const o of input.owned ?? []) {
    if (o.gateway === input.self) continue;
    const peer = peers.get(o.gateway);
    const p = parsePrefix(o.prefix);
    if (peer === undefined || !peer.live || !p.ok) continue;
    peer.owned.push(p.value);
    peer.prefixes.push(p.value);
    routes.push(p.value);
    owned.push(p.value);
  }
  return {
    peers: [...peers.values()].map(({ live: _live, ...p }) => p),
    routes,
    owned,
  };
}
