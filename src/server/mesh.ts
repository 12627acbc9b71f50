/**
 * The peering mesh between the gateways of a shared PostgreSQL store: a second WireGuard interface in the
 * gateway, keyed with this gateway's own key (DATA/gateway-key, not the members' shared key), whose peers are
 * the other registered gateways. It is one more Tunnel in the gateway's Router, behind the same TUN device.
 *
 * Each poll (every MESH_POLL_MS, and at once when the change feed says a registration, a shared route or a site
 * changed: `changed`, called by GatewaySync):
 *   1. read where each member's session is (the status row of the gateway holding it: member_status.gateway),
 *      in one statement (status rows are not in the change feed); the registered gateways, and the shared routes
 *      and sites, only when the feed said they changed, or every MESH_RESYNC_MS as a safety resync (which also
 *      brings the gateways' last heartbeats: how long each has been silent is counted on from that read);
 *   2. decide the peers and their routes (mesh-routes.ts): a member online on gateway B and not here is routed
 *      to B's peer as its /32 (/128), which are also B's AllowedIPs; so are the shared routes and the site
 *      subnets B serves (their `gateway` field names B);
 *   3. apply the difference: peers added, updated (endpoint, AllowedIPs) or removed, a first handshake started
 *      with a new peer, the routes of the mesh tunnel in the Router set, and the prefixes other gateways serve
 *      routed by the host into the TUN device (they are outside the member subnet the host already routes there).
 * A registration removed (`weft gateway remove`) drops its peer as the feed brings it; one added (`gateway join`,
 * while this gateway runs) is a new peer with a handshake at once (from one side of each pair first:
 * MESH_SECOND_INITIATOR_MS). A gateway that joins while its own `server
 * run` runs starts its mesh then (run.ts calls `start` again when the feed brings a registration).
 * Every MESH_REPORT_MS the peers and their last handshakes go to the store (`weft gateway list`).
 *
 * The packet path:
 *   - out: a packet from the TUN device to a member held by another gateway → the Router (the member's /32 is
 *     the mesh's, more specific than the member subnet the members' interface has) → the mesh device, whose
 *     cryptokey routing picks that gateway's peer. Policy was checked where the packet entered the overlay:
 *     the member firewall of the gateway whose member sent it.
 *   - in: the device drops a packet whose inner source is not in the sending peer's AllowedIPs (an address of a
 *     member that gateway holds); the rest is written to the TUN device, and the kernel forwards it to the
 *     member's tunnel here, without a second policy check. Its flow is recorded in this gateway's firewall,
 *     so the member's replies pass as they would had the flow started here.
 */
import { existsSync, readFileSync } from 'node:fs';
import { addRoute, removeRoute } from '../io/linux-net.js';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { LiveMesh } from '../api/context.js';
import { defaultMeshPort } from '../control/gateway-registration.js';
import type { GatewayRecord, MeshPeerReport } from '../control/store-postgres.js';
import type { SyncPostgresStore } from '../control/store-postgres-sync.js';
import { PrivateKey, PublicKey } from '../crypto/keys.js';
import type { Gateway } from '../gateway/gateway.js';
import { WireGuardInterface } from '../gateway/wireguard-interface.js';
import { monotonicEpochMs } from '../io/clock.js';
import { openBestBind } from '../io/udp-linux.js';
import type { Endpoint } from '../net/endpoint.js';
import { formatEndpoint } from '../net/endpoint.js';
import type { IpHeader } from '../net/ip-packet.js';
import { formatPrefix, type Prefix } from '../net/ip.js';
import { Device } from '../wireguard/device.js';
import type { MeshChanges } from './gateway-sync.js';
import { ownedPrefixes, planMesh, type MeshPeerPlan, type OwnedPrefixInput } from './mesh-routes.js';

export const GATEWAY_KEY_FILE = 'gateway-key';
/** How often the mesh reads the store (member locations change as members connect: the status report's pace). */
export const MESH_POLL_MS = 1000;
export const MESH_REPORT_MS = 5000;
/**
 * The registrations, shared routes and sites come through the change feed; they are read again this often all
 * the same (a safety net, and the gateways' heartbeats for the silence below: heartbeats are not in the feed).
 */
export const MESH_RESYNC_MS = 10_000;
/**
 * Two gateways that add each other at the same moment (one has just joined: the feed tells every gateway at
 * once) would send crossing initiations: each answers the other's, drops its own, and both wait as responders
 * for a confirmation that never comes until the retry (REKEY_TIMEOUT, 5 s; WireGuard paper §6.1). So the
 * gateway with the lower public key initiates at once; the other initiates after this long, and only if no
 * handshake has completed meanwhile (the first side's initiation may have reached a port not open yet).
 */
export const MESH_SECOND_INITIATOR_MS = 1000;
/** Keeps each pair's NAT and stateful-firewall mappings open (seconds, as wg's PersistentKeepalive). */
export const MESH_KEEPALIVE_S = 25;
/** A gateway not heard from for this long gets no routes (`gateway list` shows it silent from 15 s). */
export const MESH_SILENT_AFTER_MS = 30_000;

export interface MeshOptions {
  readonly store: SyncPostgresStore;
  readonly dataDir: string;
  /**
   * This gateway's registered name (DATA/gateway-name); undefined: the registration that holds the public key
   * of DATA/gateway-key (a `gateway join` made while this gateway runs writes the key before registering).
   */
  readonly name: string | undefined;
  readonly gateway: Gateway;
  /** The TUN device's name: the host routes the prefixes other gateways serve into it. */
  readonly interfaceName: string;
  /** The network's member-facing listen port and MTU (settings). */
  readonly listenPort: number;
  readonly mtu: number;
  /** Whether the member's session is on this gateway (as of its last status report). */
  /** The members with a live session on this gateway now (asked at each poll). */
  readonly localMembers: () => ReadonlySet<string>;
  /** Records the flow of a packet delivered from the mesh (the member firewall's). */
  readonly admitMesh: (packet: Uint8Array, header: IpHeader) => void;
  readonly log: (line: string) => void;
}

interface AppliedPeer {
  readonly name: string;
  readonly key: PublicKey;
  /** The endpoint last configured (a peer that roamed keeps its own until the registration changes). */
  endpointText: string;
  allowed: string;
  routes: number;
  delivered: number;
}

export class Mesh {
  readonly counters = { polls: 0, pollErrors: 0, gatewayReads: 0, routeReads: 0 };
  private readonly peers = new Map<string, AppliedPeer>();
  /** By the key object the device was given (it hands the same one back with each packet: no encoding). */
  private readonly byKey = new Map<PublicKey, AppliedPeer>();
  private readonly resolved = new Map<string, string>();
  private readonly resolving = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private failing = false;
  /** The prefixes other gateways serve, routed by the host into the TUN device: as asked, and as done. */
  private kernelWanted = '';
  private readonly kernelRouted = new Map<string, Prefix>();
  private kernelRouting: Promise<void> = Promise.resolve();
  /** The registrations and owned prefixes as last read, when (monotonic ms), and whether the feed changed them. */
  private gateways: readonly GatewayRecord[] = [];
  private gatewaysReadAt = -Infinity;
  private owned: readonly OwnedPrefixInput[] = [];
  private ownedReadAt = -Infinity;
  private readonly stale = { gateways: true, routes: true };
  private pollSoon = false;
  private closed = false;
  private readonly delayed = new Set<NodeJS.Timeout>();

  private constructor(
    readonly name: string,
    private readonly options: MeshOptions,
    private readonly key: PrivateKey,
    readonly port: number,
    readonly device: Device,
    readonly wg: WireGuardInterface,
  ) {}

  /**
   * Starts the mesh of a joined gateway: undefined when it has no key file or is not registered (logged, unless
   * `quiet`: a running gateway asks again as registrations arrive). Throws when its UDP port cannot be opened.
   */
  static async start(options: MeshOptions, quiet = false): Promise<Mesh | undefined> {
    const file = join(options.dataDir, GATEWAY_KEY_FILE);
    if (!existsSync(file)) {
      if (!quiet) options.log(`mesh: off (no ${file}; run weft gateway join)`);
      return undefined;
    }
    const parsed = PrivateKey.parse(readFileSync(file, 'utf8').trim());
    if (!parsed.ok) throw new Error(`${file} does not hold a private key`);
    const publicKey = parsed.key.publicKey().toBase64();
    const gateways = options.store.listGateways();
    const self =
      options.name !== undefined
        ? gateways.find((g) => g.name === options.name)
        : gateways.find((g) => g.publicKey === publicKey);
    if (self === undefined) {
      if (!quiet)
        options.log(
          `mesh: off (${options.name === undefined ? 'this gateway' : `gateway ${options.name}`} is not registered; run weft gateway join)`,
        );
      return undefined;
    }
    if (self.publicKey !== publicKey)
      throw new Error(
        `gateway ${options.name} is registered with another key than ${file}; run weft gateway join again`,
      );
    const port = self.meshPort ?? defaultMeshPort(options.listenPort);
    const device = new Device({ privateKey: parsed.key, mtu: options.mtu, handshakeQueue: true });
    const bind = await openBestBind(port);
    const late: { mesh?: Mesh } = {};
    const wg = new WireGuardInterface({
      name: 'mesh',
      device,
      bind,
      openBind: (p) => openBestBind(p),
      deliver: options.gateway.deliver,
      admit: (packet, header, peer) => {
        late.mesh?.delivered(packet, header, peer);
        return true;
      },
    });
    const mesh = new Mesh(self.name, options, parsed.key, port, device, wg);
    late.mesh = mesh;
    wg.start();
    mesh.gateways = gateways;
    mesh.gatewaysReadAt = monotonicEpochMs();
    mesh.stale.gateways = false;
    mesh.poll();
    mesh.timers.push(
      setInterval(() => mesh.poll(), MESH_POLL_MS),
      setInterval(() => mesh.report(), MESH_REPORT_MS),
    );
    for (const t of mesh.timers) t.unref();
    options.log(`mesh: ${self.name} on UDP port ${port}, ${mesh.peers.size} peer gateway(s)`);
    return mesh;
  }

  private delivered(packet: Uint8Array, header: IpHeader, peer: PublicKey): void {
    const p = this.byKey.get(peer);
    if (p) p.delivered++;
    this.options.admitMesh(packet, header);
  }

  /**
   * The change feed brought a registration, a shared route or a site (or the sync rebuilt from the whole
   * store): read them again, at once.
   */
  changed(what: MeshChanges): void {
    if (what.gateways || what.all) this.stale.gateways = true;
    if (what.routes || what.all) this.stale.routes = true;
    if (this.pollSoon || this.closed) return;
    this.pollSoon = true;
    setImmediate(() => {
      this.pollSoon = false;
      if (!this.closed) this.poll();
    });
  }

  /** Reads the store and applies the plan (steps 1-3 of the header); a store error is logged once. */
  poll(): void {
    const o = this.options;
    if (o.store.isDown() || this.closed) return;
    let plan: ReturnType<typeof planMesh>;
    try {
      const now = monotonicEpochMs();
      if (this.stale.gateways || now - this.gatewaysReadAt >= MESH_RESYNC_MS) {
        this.stale.gateways = false;
        try {
          this.gateways = o.store.listGateways();
        } catch (e) {
          this.stale.gateways = true;
          throw e;
        }
        this.gatewaysReadAt = now;
        this.counters.gatewayReads++;
      }
      if (this.stale.routes || now - this.ownedReadAt >= MESH_RESYNC_MS) {
        this.stale.routes = false;
        try {
          this.owned = ownedPrefixes(o.store.listRoutes(), o.store.listSites());
        } catch (e) {
          this.stale.routes = true;
          throw e;
        }
        this.ownedReadAt = now;
        this.counters.routeReads++;
      }
      // Silent for as long as at the read, and for the time since (a heartbeat since then is seen at the next).
      const since = now - this.gatewaysReadAt;
      const local = o.localMembers();
      plan = planMesh({
        self: this.name,
        selfPublicKey: this.key.publicKey().toBase64(),
        listenPort: o.listenPort,
        gateways:
          since === 0 ? this.gateways : this.gateways.map((g) => ({ ...g, silentMs: g.silentMs + since })),
        locations: o.store.memberLocations(this.name),
        isLocal: (member) => local.has(member),
        silentAfterMs: MESH_SILENT_AFTER_MS,
        owned: this.owned,
      });
      this.failing = false;
    } catch (e) {
      this.counters.pollErrors++;
      if (!this.failing) o.log(`mesh: cannot read the store: ${(e as Error).message}`);
      this.failing = true;
      return;
    }
    this.counters.polls++;
    this.apply(plan.peers);
    o.gateway.setRoutes(this.wg, plan.routes);
    this.routeHost(plan.peers);
  }

  /**
   * Has the host route the prefixes other gateways serve into the TUN device (and no longer those they stopped
   * serving), in order, in the background; a route the host cannot take is logged.
   */
  private routeHost(peers: readonly MeshPeerPlan[]): void {
    const wanted = new Map<string, { prefix: Prefix; peer: string }>();
    for (const p of peers)
      for (const prefix of p.owned) wanted.set(formatPrefix(prefix), { prefix, peer: p.name });
    const key = [...wanted].map(([text, w]) => `${text}>${w.peer}`).join(',');
    if (key === this.kernelWanted) return;
    this.kernelWanted = key;
    const name = this.options.interfaceName;
    const log = this.options.log;
    this.kernelRouting = this.kernelRouting.then(async () => {
      for (const [text, prefix] of [...this.kernelRouted])
        if (!wanted.has(text)) {
          await removeRoute(name, prefix);
          this.kernelRouted.delete(text);
          log(`mesh: ${text} no longer routed to another gateway`);
        }
      for (const [text, w] of wanted) {
        if (this.kernelRouted.has(text)) continue;
        try {
          if (await addRoute(name, w.prefix)) this.kernelRouted.set(text, w.prefix);
          log(`mesh: ${text} routed to gateway ${w.peer}, which serves it`);
        } catch (e) {
          log(`mesh: cannot route ${text} into ${name}: ${(e as Error).message}`);
        }
      }
    });
  }

  private apply(planned: readonly MeshPeerPlan[]): void {
    const now = monotonicEpochMs();
    const wanted = new Set<string>();
    for (const p of planned) {
      const parsed = PublicKey.parse(p.publicKey);
      if (!parsed.ok) continue;
      wanted.add(p.name);
      let applied = this.peers.get(p.name);
      if (applied !== undefined && !applied.key.equals(parsed.key)) {
        this.remove(applied);
        applied = undefined;
      }
      const endpoint = this.endpointOf(p);
      const endpointText = endpoint === null ? '' : formatEndpoint(endpoint);
      const allowed = p.prefixes.map(formatPrefix).join(',');
      if (applied === undefined) {
        applied = {
          name: p.name,
          key: parsed.key,
          endpointText,
          allowed,
          routes: p.members.length,
          delivered: 0,
        };
        this.peers.set(p.name, applied);
        this.byKey.set(parsed.key, applied);
        this.device.setPeer({
          publicKey: parsed.key,
          endpoint,
          persistentKeepalive: MESH_KEEPALIVE_S,
          allowedIps: p.prefixes,
          replaceAllowedIps: true,
        });
        this.options.log(`mesh: peer ${p.name} (${endpointText || 'endpoint unresolved'})`);
        if (endpoint !== null) this.initiate(applied, now);
        continue;
      }
      applied.routes = p.members.length;
      if (endpointText !== applied.endpointText && endpoint !== null) {
        const first = applied.endpointText === '';
        applied.endpointText = endpointText;
        this.device.setPeer({ publicKey: parsed.key, endpoint });
        if (first) this.initiate(applied, now);
      }
      if (allowed !== applied.allowed) {
        applied.allowed = allowed;
        this.device.setPeer({ publicKey: parsed.key, allowedIps: p.prefixes, replaceAllowedIps: true });
      }
    }
    for (const applied of [...this.peers.values()])
      if (!wanted.has(applied.name)) {
        this.remove(applied);
        this.options.log(`mesh: peer ${applied.name} removed (no longer registered)`);
      }
  }

  /** A first handshake with a new peer: at once, or a moment later (see MESH_SECOND_INITIATOR_MS). */
  private initiate(applied: AppliedPeer, now: number): void {
    if (this.key.publicKey().toBase64() < applied.key.toBase64()) {
      this.wg.perform(this.device.initiateHandshake(applied.key, now));
      return;
    }
    const timer = setTimeout(() => {
      this.delayed.delete(timer);
      if (this.closed || this.peers.get(applied.name) !== applied) return;
      const later = monotonicEpochMs();
      if ((this.device.peerStatus(applied.key, later)?.lastHandshake ?? 0) > 0) return;
      this.wg.perform(this.device.initiateHandshake(applied.key, later));
    }, MESH_SECOND_INITIATOR_MS);
    timer.unref();
    this.delayed.add(timer);
  }

  private remove(applied: AppliedPeer): void {
    this.device.removePeer(applied.key);
    this.peers.delete(applied.name);
    this.byKey.delete(applied.key);
  }

  /** The peer's mesh endpoint: an address as registered, or a host name once resolved (in the background). */
  private endpointOf(p: MeshPeerPlan): Endpoint | null {
    if (p.host === null) return null;
    if (isIP(p.host) !== 0) return { address: p.host, port: p.port };
    const address = this.resolved.get(p.host);
    if (!this.resolving.has(p.host)) {
      const host = p.host;
      this.resolving.add(host);
      lookup(host, { verbatim: true }).then(
        (r) => {
          this.resolving.delete(host);
          this.resolved.set(host, r.address);
        },
        (e: NodeJS.ErrnoException) => {
          this.resolving.delete(host);
          if (address === undefined) this.options.log(`mesh: cannot resolve ${host}: ${e.code ?? e.message}`);
        },
      );
    }
    return address === undefined ? null : { address, port: p.port };
  }

  /** The peers as this gateway sees them, for /status. */
  live(): LiveMesh {
    const now = monotonicEpochMs();
    return {
      name: this.name,
      port: this.port,
      publicKey: this.key.publicKey().toBase64(),
      peers: [...this.peers.values()]
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map((p) => {
          const s = this.device.peerStatus(p.key, now);
          return {
            name: p.name,
            publicKey: p.key.toBase64(),
            endpoint: s?.endpoint ? formatEndpoint(s.endpoint) : null,
            lastHandshake: s && s.lastHandshake > 0 ? new Date(s.lastHandshake).toISOString() : null,
            rxBytes: s?.rxBytes ?? 0,
            txBytes: s?.txBytes ?? 0,
            routes: p.routes,
            delivered: p.delivered,
          };
        }),
    };
  }

  /** Writes the peers and their last handshakes to the store (`weft gateway list`). */
  report(): void {
    const o = this.options;
    if (o.store.isDown()) return;
    const peers: MeshPeerReport[] = this.live().peers.map((p) => ({
      name: p.name,
      endpoint: p.endpoint,
      lastHandshake: p.lastHandshake,
      routes: p.routes,
    }));
    try {
      o.store.reportGatewayMesh(this.name, peers);
    } catch (e) {
      if (!this.failing) o.log(`mesh: cannot report its peers: ${(e as Error).message}`);
    }
  }

  /** The mesh device's drops by reason (e.g. a packet whose inner source the sending gateway does not hold). */
  drops(): Record<string, number> {
    return { ...this.device.drops };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
    this.timers.length = 0;
    this.kernelWanted = 'closed';
    await this.kernelRouting;
    for (const prefix of this.kernelRouted.values()) await removeRoute(this.options.interfaceName, prefix);
    this.kernelRouted.clear();
    this.options.gateway.router.removeTunnel(this.wg);
    await this.wg.close();
  }
}
