/**
 * `weft server run --data DIR`: the people VPN gateway.
 *
 * Starting (each step is undone if a later one fails):
 *   1. open the store and read the settings and the gateway's key;
 *   2. bring the WireGuard interface up (the data plane of `weft up`) with the gateway's tunnel addresses,
 *      routing the whole member subnet into the device, with the member firewall checking every packet a
 *      member sends;
 *   3. install every active member from the store (GatewaySync), turn forwarding on, install NAT if set;
 *   4. serve the REST API and the web console (over TLS with --tls-cert/--tls-key; on --api-listen, or the
 *      stored apiListen setting);
 *   5. follow the store every 200 ms and report member status every 5 s;
 *   6. serve the IPsec sites in the store (startIpsec, once there is one): their remote subnets routed into the
 *      device, their traffic checked against their groups' policies, their status reported every 5 s.
 *   7. with the multicast setting on: replicate group traffic between members and the host (docs/multicast.md),
 *      the gateway being the IGMP querier in every member's tunnel.
 *   8. on a shared store, a joined gateway peers with the other gateways (mesh.ts): its mesh interface is one
 *      more tunnel in the router, routing the members whose sessions other gateways hold. A gateway that joins
 *      while it runs starts its mesh when the change feed brings its registration (no restart).
 *   9. with --shared-address on a PostgreSQL store: hold the shared address when the lease is ours, stand by
 *      otherwise (failover.ts).
 * Stopping (SIGTERM, SIGINT): the API, NAT, forwarding, the interface, a last status report, the store.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { buildApi } from '../api/server.js';
import type { LiveStore } from '../api/context.js';
import { ControlPlane, GATEWAY_LINK_LOCAL } from '../control/control-plane.js';
import type { Settings } from '../control/model.js';
import { internetWarning } from '../control/internet-access.js';
import { siteSpec } from '../control/sites.js';
import { endpoint, interfaceName, listenAddress } from '../control/validate.js';
import type { WgQuickConfig, InterfaceAddress } from '../config/wg-quick.js';
import { bringUp, type Running } from '../gateway/bring-up.js';
import { UserError } from '../control/errors.js';
import { monotonicEpochMs } from '../io/clock.js';
import { addRoute, hostAddresses, linkExists, removeRoute } from '../io/linux-net.js';
import { formatAddress, parseAddress, parsePrefix, prefixContains, type Prefix } from '../net/ip.js';
import { joinedName, openStore, storeLocation } from './data-dir.js';
import { isSyncPostgresStore, type SyncPostgresStore } from '../control/store-postgres-sync.js';
import { StoreUnavailable } from '../control/store-postgres.js';
import { hostUplinks } from './host-networks.js';
import { GatewaySync } from './gateway-sync.js';
import { Mesh, MESH_RESYNC_MS, type MeshOptions } from './mesh.js';
import type { MeshChanges } from './gateway-sync.js';
import { startOpenVpn } from './openvpn.js';
import { startIpsec } from './ipsec.js';
import type { IpsecInterface } from '../gateway/ipsec-interface.js';
import type { SiteSpec } from '../ipsec/site-spec.js';
import type { OpenVpnInterface } from '../gateway/openvpn-interface.js';
import { enableForwarding, installNat, removeNat } from './nat.js';
import { Replicator, type MulticastSnapshot } from '../gateway/multicast.js';
import { MulticastMembers } from './multicast-members.js';
import { siteQueryFamilies } from '../multicast/site-selectors.js';
import { querierConfigFrom } from '../control/multicast-settings.js';
import type { IpsecSite } from '../gateway/ipsec-site.js';
import { LanBridge } from '../gateway/multicast-lan.js';
import { LanMulticastSocket } from '../io/multicast-lan.js';
import { MULTICAST_STATUS_MS, removeMulticastStatus, writeMulticastStatus } from './multicast-status.js';
import type { Failover, SharedAddress } from './failover.js';
import { startFailover } from './failover-host.js';

/** What `weft server run` takes besides the data directory. */
export interface ServerRunOptions {
  /** HOST:PORT for the REST API and the console, instead of the stored apiListen setting (checked). */
  readonly apiListen?: string;
  /** PEM certificate chain and private key: serve HTTPS. */
  readonly tls?: TlsFiles;
  /**
   * This gateway's interface name instead of the stored interfaceName setting (checked): gateways sharing one
   * store share their settings, and names must be unique per machine.
   */
  readonly interfaceName?: string;
  /** A member-facing address shared with other gateways of the store, held by one at a time (failover.ts). */
  readonly sharedAddress?: SharedAddress;
}

export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * Reads `--tls-cert` and `--tls-key` (both or neither) and checks that they make a TLS context (PEM that
 * parses, a key that belongs to the certificate), so a mistake is reported before anything is set up.
 */
export function readTlsFiles(
  certFile: string | undefined,
  keyFile: string | undefined,
): TlsFiles | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined)
    throw new UserError(
      `weft: --tls-cert and --tls-key go together (got only ${certFile === undefined ? '--tls-key' : '--tls-cert'})`,
    );
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new UserError(`weft: ${flag}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  const files = { cert: read('--tls-cert', certFile), key: read('--tls-key', keyFile) };
  try {
    createSecureContext(files);
  } catch (e) {
    throw new UserError(
      `weft: --tls-cert ${certFile} / --tls-key ${keyFile}: not a usable PEM certificate and matching key: ` +
        (e as Error).message,
    );
  }
  return files;
}

/** Checks `--interface NAME` as the interfaceName setting is checked. */
export function interfaceOption(value: string): string {
  try {
    return interfaceName('--interface', value);
  } catch (e) {
    throw new UserError(`weft: ${(e as Error).message}`);
  }
}

/** Checks `--api-listen ADDRESS:PORT` as the apiListen setting is checked; returns it in canonical form. */
export function apiListenOption(value: string): string {
  try {
    return listenAddress('--api-listen', value);
  } catch (e) {
    throw new UserError(`weft: ${(e as Error).message}`);
  }
}

export interface RunningServer {
  readonly sync: GatewaySync;
  readonly running: Running;
  readonly apiUrl: string;
  stop(): Promise<void>;
}

function interfaceAddress(host: string, subnet: string): InterfaceAddress {
  const a = parseAddress(host);
  const p = parsePrefix(subnet);
  if (!a.ok || !p.ok) throw new UserError(`weft: stored address ${host} or subnet ${subnet} is invalid`);
  return { address: a.value, prefix: p.value, bits: p.value.bits, text: `${host}/${p.value.bits}` };
}

function prefixOf(text: string): Prefix {
  const p = parsePrefix(text);
  if (!p.ok) throw new UserError(`weft: stored subnet ${text} is invalid`);
  return p.value;
}

/** How often a running server checks whether the OpenVPN server certificate needs renewing. */
const PKI_CHECK_MS = 12 * 3600_000;

export async function runServer(
  dataDir: string,
  log: (line: string) => void,
  options: ServerRunOptions = {},
): Promise<RunningServer> {
  const store = openStore(dataDir);
  // The shared PostgreSQL store, or undefined for the embedded SQLite one.
  const shared = isSyncPostgresStore(store) ? store : undefined;
  if (options.sharedAddress && !shared) {
    store.close();
    throw new UserError(
      'weft: --shared-address needs the shared PostgreSQL store (the gateways of a pair choose the holder there)',
    );
  }
  const undo: (() => Promise<void> | void)[] = [() => store.close()];
  const unwind = async (): Promise<void> => {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`);
      }
    }
    undo.length = 0;
  };
  try {
    const cp = new ControlPlane(store, undefined, { uplinks: hostUplinks });
    const settings = cp.settings();
    // A store from before OpenVPN gets its CA here; a server certificate near its end is renewed, here and
    // twice a day while the server runs (renewal starts 30 days before the end).
    await cp.ensureOpenVpn();
    const pkiTimer = setInterval(() => {
      cp.ensureOpenVpn().catch((e: unknown) => log(`openvpn certificates: ${(e as Error).message}`));
    }, PKI_CHECK_MS);
    pkiTimer.unref();
    undo.push(() => clearInterval(pkiTimer));
    const name = options.interfaceName ?? settings.interfaceName;
    const gw = cp.gatewayAddresses();
    const addresses = [interfaceAddress(gw.ip, settings.subnet)];
    if (gw.ip6 && settings.subnet6) addresses.push(interfaceAddress(gw.ip6, settings.subnet6));

    if (await linkExists(name))
      throw new UserError(`weft: interface ${name} already exists (is a server running?)`);
    const owners = await hostAddresses();
    for (const a of addresses) {
      const owner = owners.find((o) => o.address === a.text.split('/')[0]);
      if (owner) throw new UserError(`weft: ${a.text} is already in use on interface ${owner.ifname}`);
    }

    const config: WgQuickConfig = {
      interface: {
        privateKey: cp.gatewayPrivateKey(),
        listenPort: settings.listenPort,
        addresses,
        mtu: settings.mtu,
        dns: [],
        dnsSearch: [],
        table: 'off',
        preUp: [],
        postUp: [],
        preDown: [],
        postDown: [],
        saveConfig: false,
      },
      peers: [],
    };
    // The member firewall exists once the device does. Until then the only peer is the one that warms the
    // packet path (warmup.ts), whose packets never leave the host.
    const late: { sync?: GatewaySync; multicast?: ReturnType<typeof startMulticast> } = {};
    const running = await bringUp({ config, name, endpoints: [] }, log, {
      admit: (packet, header, peer) => (late.sync ? late.sync.admit(packet, header, peer) : true),
      routes: [settings.subnet, settings.subnet6].filter((s): s is string => s !== null).map(prefixOf),
    });
    undo.push(() => running.stop());

    const restoreForwarding = enableForwarding(settings.subnet6 !== null);
    undo.push(restoreForwarding);
    const applyNat = async (s: Settings): Promise<void> => {
      if (s.natEgress)
        await installNat({ interfaceName: name, egress: s.natEgress, subnet: s.subnet, subnet6: s.subnet6 });
      else await removeNat(name);
    };
    await applyNat(settings);
    undo.push(() => removeNat(name));

    // A gateway that joined (`weft gateway join`) is named in its status reports and peers with the others.
    const joined = shared ? joinedName(dataDir) : undefined;
    // Its name and mesh as of now: a gateway that joins while it runs gets both then (step 8).
    const self: { name?: string; mesh?: Mesh; starting?: Promise<void>; stopped: boolean } = {
      name: joined,
      stopped: false,
    };
    const meshHooks: { changed?: (what: MeshChanges) => void } = {};
    // A standby gateway of a shared address reaches out to no member (its handshake would move the member here).
    const pair: { failover?: Failover } = {};
    const activeSync = new GatewaySync(cp, running.device, {
      log,
      sharedStore: shared !== undefined,
      gatewayName: joined,
      meshChanged: (what) => meshHooks.changed?.(what),
      handshake: (key) => {
        if (pair.failover && !pair.failover.isHolder) return;
        running.wg.perform(running.device.initiateHandshake(key, monotonicEpochMs()));
      },
      settingsChanged: (previous, next) => {
        if (next.listenPort !== previous.listenPort)
          running.wg.setListenPort(next.listenPort).then(
            () => log(`listening on UDP port ${next.listenPort}`),
            (e: Error) => log(`listen port ${next.listenPort}: ${e.message}`),
          );
        if (next.natEgress !== previous.natEgress)
          applyNat(next).then(
            () => log(next.natEgress ? `NAT egress through ${next.natEgress}` : 'NAT egress off'),
            (e: Error) => log(`NAT: ${e.message}`),
          );
        late.multicast?.settingsChanged(next);
        for (const k of ['interfaceName', 'mtu', 'apiListen', 'multicast'] as const)
          if (next[k] !== previous[k]) log(`settings: ${k} changes on the next start`);
      },
    });
    late.sync = activeSync;
    activeSync.poll();
    const startedAt = new Date().toISOString();
    const health = storeHealth(log);
    /** Runs `step` against the store; an unreachable store is logged once (by `health`), not per call. */
    const guarded = (what: string, step: () => void): boolean => {
      try {
        step();
        return true;
      } catch (e) {
        if (e instanceof StoreUnavailable) health.lost(e);
        else log(`${what}: ${(e as Error).message}`);
        return false;
      }
    };
    const pollNow = (): void => {
      if (guarded('sync', () => activeSync.poll())) health.ok();
    };
    const pollTimer = setInterval(pollNow, 200);
    // On a shared store, LISTEN/NOTIFY wakes the sync at each commit on the database (any gateway's API or
    // CLI), so a change is live within milliseconds; the poll above stays as the backstop and runs expiries.
    // Status reports while the store is away are skipped (the next one after it is back carries the totals).
    if (shared) {
      let woken = false;
      shared.follow((event) => {
        if (event.kind === 'lost') {
          health.lost(new StoreUnavailable(shared.path, new Error(event.message)));
          return;
        }
        if (woken) return;
        woken = true;
        setImmediate(() => {
          woken = false;
          pollNow();
        });
      });
    }
    // A gateway that joined tells the store it is alive, with the report's cadence.
    const heartbeat = (): void => {
      const me = self.name;
      if (me === undefined || !shared || shared.isDown()) return;
      guarded('gateway heartbeat', () => {
        if (!shared.heartbeatGateway(me)) log(`gateway ${me} is not registered (weft gateway join)`);
      });
    };
    heartbeat();
    const reportTimer = setInterval(() => {
      heartbeat();
      if (!shared?.isDown()) guarded('status report', () => activeSync.report());
    }, 5000);
    undo.push(() => {
      clearInterval(pollTimer);
      clearInterval(reportTimer);
      guarded('status report', () => activeSync.report());
    });

    // 8. The peering mesh with the other joined gateways (docs/scale-out.md).
    const meshOptions = (meshName: string | undefined, sharedStore: SyncPostgresStore): MeshOptions => ({
      store: sharedStore,
      dataDir,
      name: meshName,
      gateway: running.gateway,
      interfaceName: name,
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      localMembers: () => activeSync.onlineNow(),
      admitMesh: activeSync.admitMesh,
      log,
    });
    const meshStarted = async (mesh: Mesh): Promise<void> => {
      if (self.stopped) {
        await mesh.close();
        return;
      }
      self.mesh = mesh;
      self.name = mesh.name;
      activeSync.setGatewayName(mesh.name);
      undo.push(() => mesh.close());
      // A member that connects here is reported at once, not at the 5 s cadence: the other gateways route it
      // here from their next mesh poll.
      const arrivals = setInterval(() => {
        if (!shared?.isDown())
          guarded('status report', () => {
            if (activeSync.hasArrivals()) activeSync.report();
          });
      }, 1000);
      undo.push(() => clearInterval(arrivals));
    };
    if (shared && joined !== undefined) {
      const mesh = await Mesh.start(meshOptions(joined, shared)).catch((e: Error) => {
        throw new UserError(`weft: the mesh cannot start: ${e.message}`);
      });
      if (mesh) await meshStarted(mesh);
    }
    if (shared) {
      // A gateway not (yet) in the mesh asks again whenever the change feed brings a registration (its own
      // `gateway join`, made while it runs, writes DATA/gateway-key and then registers it), and every
      // MESH_RESYNC_MS as a safety net. Once its mesh runs, the mesh follows the feed itself.
      let lastError = '';
      const tryJoin = (): void => {
        if (self.mesh !== undefined || self.starting !== undefined || self.stopped || shared.isDown()) return;
        self.starting = Mesh.start(meshOptions(joinedName(dataDir), shared), true)
          .then(async (mesh) => {
            if (!mesh) return;
            await meshStarted(mesh);
            if (!self.stopped) {
              log(`mesh: joined while running as ${mesh.name}`);
              guarded('status report', () => activeSync.report());
              heartbeat();
            }
          })
          .catch((e: Error) => {
            if (e.message !== lastError) log(`mesh: cannot start: ${e.message}`);
            lastError = e.message;
          })
          .finally(() => {
            self.starting = undefined;
          });
      };
      meshHooks.changed = (what) => {
        if (self.mesh) self.mesh.changed(what);
        else if (what.gateways) tryJoin();
      };
      const joinTimer = setInterval(tryJoin, MESH_RESYNC_MS);
      joinTimer.unref();
      undo.push(async () => {
        clearInterval(joinTimer);
        self.stopped = true;
        await self.starting;
      });
    }
    // 9. The shared member-facing address of a failover pair (docs/scale-out.md).
    if (options.sharedAddress && shared) {
      const where = storeLocation(dataDir);
      const failover = await startFailover(options.sharedAddress, {
        store,
        storeUrl: where.kind === 'postgres' ? where.url : '',
        holder: joined,
        device: running.device,
        perform: (actions) => running.wg.perform(actions),
        now: monotonicEpochMs,
        log,
      });
      pair.failover = failover;
      undo.push(() => failover.stop());
    }

    const multicast =
      settings.multicast === true ? startMulticast(cp, activeSync, running, log, dataDir) : undefined;
    if (multicast) undo.push(multicast.stop);
    late.multicast = multicast;

    let openvpn: OpenVpnInterface | undefined;
    try {
      openvpn = await startOpenVpn(cp, activeSync, running.gateway, log);
    } catch (e) {
      throw new UserError(`weft: OpenVPN cannot start: ${(e as Error).message}`);
    }
    if (openvpn) {
      const ovpn = openvpn;
      undo.push(() => ovpn.close());
      multicast?.attachOpenVpn(ovpn);
    }

    // IPsec: the sockets open with the first configured site (UDP 500 and 4500 stay closed without one); the
    // sites follow the store within a second, and their status is reported with the members'.
    const ipsecState: { ipsec?: IpsecInterface; starting?: Promise<void>; seen: string } = { seen: '' };
    // The kernel routes the enabled sites' remote subnets into the device, where the router takes them.
    const siteRoutes = new Map<string, Prefix>();
    let routing: Promise<void> = Promise.resolve();
    const routeSites = (specs: readonly SiteSpec[]): void => {
      const wanted = new Map<string, Prefix>();
      for (const spec of specs)
        if (spec.enabled && spec.mode === 'tunnel')
          for (const text of spec.remoteSubnets) {
            const p = parsePrefix(text);
            if (p.ok) wanted.set(text, p.value);
          }
      routing = routing.then(async () => {
        for (const [text, p] of siteRoutes)
          if (!wanted.has(text)) {
            await removeRoute(name, p);
            siteRoutes.delete(text);
          }
        for (const [text, p] of wanted)
          if (!siteRoutes.has(text)) {
            try {
              if (await addRoute(name, p)) siteRoutes.set(text, p);
            } catch (e) {
              log(`IPsec: cannot route ${text} into ${name}: ${(e as Error).message}`);
            }
          }
      });
    };
    const syncSites = (): void => {
      if (ipsecState.starting) return;
      // A site another gateway serves (its `gateway` field) gets no IKE here: the mesh routes its subnets there.
      const records = cp.store.listSites();
      const all: SiteSpec[] = records.map(siteSpec);
      const specs: SiteSpec[] = records
        .filter((r) => r.gateway === undefined || r.gateway === self.name)
        .map(siteSpec);
      const text = JSON.stringify(all) + JSON.stringify(specs);
      if (text === ipsecState.seen) return;
      ipsecState.seen = text;
      activeSync.setSites(all.filter((s) => s.enabled));
      routeSites(specs);
      multicast?.setSites(specs, (site) => ipsecState.ipsec?.siteTunnel(site));
      if (ipsecState.ipsec) {
        ipsecState.ipsec.update(specs);
        return;
      }
      if (specs.length === 0) return;
      ipsecState.starting = startIpsec(running.gateway, specs, log, {
        admit: (packet, header, site) => activeSync.admitSite(site, packet, header),
      }).then(
        (ipsec) => {
          ipsecState.ipsec = ipsec;
          ipsecState.starting = undefined;
          multicast?.attachIpsec(ipsec);
        },
        (e: Error) => {
          ipsecState.starting = undefined;
          log(`IPsec cannot start: ${e.message}`);
        },
      );
    };
    const reportSites = (): void => {
      if (ipsecState.ipsec) store.putSiteStatuses(ipsecState.ipsec.status());
    };
    syncSites();
    await ipsecState.starting;
    const siteTimer = setInterval(() => guarded('sites', syncSites), 1000);
    const siteReportTimer = setInterval(() => guarded('site status report', reportSites), 5000);
    undo.push(async () => {
      clearInterval(siteTimer);
      clearInterval(siteReportTimer);
      routeSites([]);
      await routing;
      await ipsecState.starting;
      const ipsec = ipsecState.ipsec;
      if (!ipsec) return;
      await ipsec.close();
      guarded('site status report', () => store.putSiteStatuses(ipsec.status()));
    });

    const liveStore = (): LiveStore => ({
      kind: shared ? 'postgres' : 'sqlite',
      location: store.path,
      role: shared ? 'shared' : 'standalone',
      reachable: !shared?.isDown() && !health.isDown(),
      ...activeSync.feedPosition(),
    });
    const api = buildApi({
      controlPlane: cp,
      https: options.tls ?? null,
      live: {
        gateway: () => ({
          interfaceName: name,
          listenPort: running.wg.listenPort,
          publicKey: cp.gatewayPublicKey(),
          startedAt,
          ...activeSync.summary(),
          store: liveStore(),
          ...(self.mesh ? { mesh: self.mesh.live() } : {}),
          ...(pair.failover ? { failover: pair.failover.status() } : {}),
        }),
        metrics: () => ({
          members: activeSync.memberMetrics(),
          drops: {
            wireguard: { ...running.device.drops },
            router: {
              'no-route': running.gateway.router.counters.noRoute,
              malformed: running.gateway.router.counters.malformed,
            },
            firewall: { policy: activeSync.firewallCounters.dropped },
            ...(multicast ? { multicast: multicast.drops() } : {}),
            ...(openvpn ? { openvpn: Object.fromEntries(openvpn.drops) } : {}),
            ...(self.mesh ? { mesh: self.mesh.drops() } : {}),
          },
          store: liveStore(),
          ...(pair.failover ? { failover: pair.failover.status() } : {}),
        }),
        ...(multicast ? { multicast: multicast.snapshot } : {}),
      },
    });
    const apiListen = options.apiListen ?? settings.apiListen;
    const listen = endpoint('apiListen', apiListen);
    try {
      await api.listen({ host: listen.host, port: listen.port });
    } catch (e) {
      await api.close().catch(() => undefined);
      throw new UserError(`weft: the API cannot listen on ${apiListen}: ${(e as Error).message}`);
    }
    undo.push(() => api.close());
    const origin = `${options.tls ? 'https' : 'http'}://${apiListen}`;
    const apiUrl = `${origin}/api/v1`;
    log(
      `ready: ${name} on UDP port ${running.wg.listenPort}, ${activeSync.memberCount} active member(s), API ${apiUrl}, console ${origin}/`,
    );
    log(
      shared
        ? `store: PostgreSQL ${store.path}, following its change feed (LISTEN/NOTIFY)`
        : `store: SQLite ${store.path}`,
    );
    // Full-tunnel members this configuration leaves without internet, and why (at most 5 lines).
    const policies = cp.listPolicies();
    const cutOff = store
      .allMembers()
      .filter((m) => !m.disabled)
      .map((m) => internetWarning(m.name, m.fullTunnel, m.groups, settings, policies))
      .filter((w) => w !== '');
    for (const w of cutOff.slice(0, 5)) log(`warning: ${w}`);
    if (cutOff.length > 5)
      log(`warning: and ${cutOff.length - 5} more full-tunnel member(s) without internet`);

    let stopping: Promise<void> | undefined;
    return {
      sync: activeSync,
      running,
      apiUrl,
      stop: () => (stopping ??= unwind().then(() => log(`${name} stopped`))),
    };
  } catch (e) {
    await unwind();
    throw e;
  }
}

/**
 * The store's reachability as the log tells it: one line when it is lost, one when it is back (a shared
 * PostgreSQL store; the gateway forwards with the state it has meanwhile).
 */
function storeHealth(log: (line: string) => void): { lost(e: Error): void; ok(): void; isDown(): boolean } {
  let since: number | undefined;
  return {
    isDown: () => since !== undefined,
    lost: (e) => {
      if (since !== undefined) return;
      since = Date.now();
      log(`store: unreachable (${e.message}); forwarding with the state in hand, retrying`);
    },
    ok: () => {
      if (since === undefined) return;
      const seconds = ((Date.now() - since) / 1000).toFixed(1);
      since = undefined;
      log(`store: reachable again after ${seconds} s; caught up from the change feed`);
    },
  };
}

/** How often the multicast querier's timers run (queries, expiries; the shortest RFC timer is 1 s). */
const MULTICAST_TICK_MS = 100;

/**
 * Multicast for members and the host: a replicator whose ports are the installed WireGuard members (through
 * GatewaySync, so a removed or disabled member leaves its groups at once), the OpenVPN sessions (attached
 * once the OpenVPN interface runs) and the host's TUN side. The host is queried like the others, over IGMP
 * from 0.0.0.0 (its own address would be a martian to its kernel; Gateway.attachMulticast), so the reports
 * its kernel sends keep its memberships while its sockets stay joined.
 */
function startMulticast(
  cp: ControlPlane,
  sync: GatewaySync,
  running: Running,
  log: (line: string) => void,
  dataDir: string,
): {
  stop: () => Promise<void>;
  drops: () => Record<string, number>;
  snapshot: () => MulticastSnapshot;
  attachOpenVpn: (ovpn: OpenVpnInterface) => void;
  attachIpsec: (ipsec: IpsecInterface) => void;
  setSites: (specs: readonly SiteSpec[], tunnel: (name: string) => IpsecSite | undefined) => void;
  settingsChanged: (next: Settings) => void;
} {
  const gw4 = parseAddress(cp.gatewayAddresses().ip);
  // IPv6: MLD queries from the gateway's link-local address; the members' reports come from theirs.
  const gw6 = cp.settings().subnet6 ? parseAddress(GATEWAY_LINK_LOCAL) : undefined;
  // The LAN bridge (an IGMP proxy on settings.multicastLan) follows the querier's joins: set just below.
  let lan: LanBridge | undefined;
  const settings = cp.settings();
  const replicator = new Replicator({
    querier: querierConfigFrom(settings.multicastQuerier),
    querySource4: gw4.ok ? gw4.value.bytes : null,
    querySource6: gw6?.ok ? gw6.value.bytes : null,
    onAction: (a) => {
      lan?.onAction(a);
      if (a.type === 'joined' || a.type === 'left') {
        const group = formatAddress({ family: a.family, bytes: a.group });
        log(`multicast: ${a.port.id} ${a.type === 'joined' ? 'joined' : `left (${a.why})`} ${group}`);
      }
    },
  });
  const members = new MulticastMembers(
    replicator,
    running.wg,
    sync.admitMember,
    sync.permits,
    monotonicEpochMs,
    sync,
    sync,
  );
  replicator.policy = members;
  sync.attach(members);
  running.wg.groups = members;
  running.device.linkLocalGroups = gw6 !== undefined;
  // The host is queried like a member (IGMP from 0.0.0.0, MLD from fe80::1), so its memberships last while
  // its sockets stay joined.
  running.gateway.attachMulticast(replicator, gw6 ? [4, 6] : [4], monotonicEpochMs());
  const lanName = cp.settings().multicastLan;
  let lanSocket: LanMulticastSocket | undefined;
  if (lanName !== undefined) {
    try {
      lanSocket = LanMulticastSocket.open(lanName);
    } catch (e) {
      throw new UserError(`weft: multicast LAN ${lanName}: ${(e as Error).message}`);
    }
    const subnet = parsePrefix(cp.settings().subnet);
    const subnet6 = parsePrefix(cp.settings().subnet6 ?? '');
    const bridge = new LanBridge(
      replicator,
      lanSocket,
      (source) =>
        source.length === 4
          ? subnet.ok && prefixContains(subnet.value, { family: 4, bytes: source })
          : subnet6.ok && prefixContains(subnet6.value, { family: 6, bytes: source }),
      log,
    );
    lanSocket.start((packets) => bridge.input(packets, monotonicEpochMs()));
    lan = bridge;
    members.setLanPort(bridge.port);
  }
  members.setStatic(settings.multicastStatic ?? []);
  let timers = JSON.stringify(settings.multicastQuerier ?? null);
  let statics = JSON.stringify(settings.multicastStatic ?? []);
  let ipsecAttached: IpsecInterface | undefined;
  const timer = setInterval(() => {
    try {
      replicator.tick(monotonicEpochMs());
    } catch (e) {
      log(`multicast: ${(e as Error).message}`);
    }
  }, MULTICAST_TICK_MS);
  timer.unref();
  let openvpn: OpenVpnInterface | undefined;
  // `weft multicast list` reads the replicator's state from the data directory (multicast-status.ts).
  let writing: Promise<void> = Promise.resolve();
  let writeFailed = false;
  const statusTimer = setInterval(() => {
    writing = writeMulticastStatus(dataDir, replicator.snapshot(monotonicEpochMs()), new Date()).then(
      () => void (writeFailed = false),
      (e: unknown) => {
        if (!writeFailed) log(`multicast: cannot write its status: ${(e as Error).message}`);
        writeFailed = true;
      },
    );
  }, MULTICAST_STATUS_MS);
  statusTimer.unref();
  log(
    `multicast: on (${gw6 ? 'IGMP and MLD querier' : 'IGMP querier'} in every member tunnel` +
      `${lanName !== undefined ? `; IGMP proxy on ${lanName}` : ''})`,
  );
  return {
    stop: async () => {
      lan?.close();
      lanSocket?.close();
      clearInterval(timer);
      clearInterval(statusTimer);
      await writing;
      await removeMulticastStatus(dataDir).catch(() => undefined);
      running.wg.groups = undefined;
      running.device.linkLocalGroups = false;
      if (openvpn) openvpn.groups = undefined;
      if (ipsecAttached) ipsecAttached.groups = undefined;
      running.gateway.router.groups = undefined;
    },
    drops: () => ({ ...replicator.drops, ...replicator.membershipDrops }),
    snapshot: () => replicator.snapshot(monotonicEpochMs()),
    // OpenVPN sessions as ports: the interface starts after the replicator.
    attachOpenVpn: (ovpn) => {
      openvpn = ovpn;
      ovpn.groups = members;
    },
    // IPsec sites with multicast ranges as ports: the interface starts with the first site.
    attachIpsec: (ipsec) => {
      ipsecAttached = ipsec;
      ipsec.groups = members;
    },
    setSites: (specs, tunnel) =>
      members.setSites(
        specs
          .filter((s) => s.enabled && s.mode === 'tunnel' && (s.multicast?.length ?? 0) > 0)
          .map((s) => ({ name: s.name, families: siteQueryFamilies(s.multicast ?? []) })),
        tunnel,
      ),
    // Live: the querier's timers and the static memberships (the rest of multicast applies at the next start).
    settingsChanged: (next) => {
      const t = JSON.stringify(next.multicastQuerier ?? null);
      if (t !== timers) {
        timers = t;
        replicator.querier.configure(querierConfigFrom(next.multicastQuerier), monotonicEpochMs());
        log(`multicast: querier timers ${JSON.stringify(next.multicastQuerier ?? 'defaults')}`);
      }
      const st = JSON.stringify(next.multicastStatic ?? []);
      if (st !== statics) {
        statics = st;
        members.setStatic(next.multicastStatic ?? []);
      }
    },
  };
}

/** Foreground: runs until SIGTERM or SIGINT. */
export async function serverRunForeground(dataDir: string, options: ServerRunOptions = {}): Promise<void> {
  const log = (line: string): void => void process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const server = await runServer(dataDir, log, options);
  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      void server.stop().then(resolve, resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
