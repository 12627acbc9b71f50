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
 * 3. A gateway the database has not heard from for `silentAfterMs` gets no routes: its members are left to
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
}

export interface MeshPlan {
  readonly peers: readonly MeshPeerPlan[];
  /** Every prefix routed into the mesh (the union of the peers' prefixes). */
  readonly routes: readonly Prefix[];
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
  return {
    peers: [...peers.values()].map(({ live: _live, ...p }) => p),
    routes,
  };
}
