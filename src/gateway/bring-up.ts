/**
 * A WireGuard interface from a wg-quick style file, brought up in this process: the library behind `weft up`
 * (src/cli/up.ts) and `weft server run` (src/server/run.ts).
 *
 * Bringing an interface up (each step is undone, in reverse, if a later one fails: nothing is half-applied):
 *   1. read and parse the file; every error names the file, the line and the key;
 *   2. preflight: the interface name is free, no live UAPI socket has it, no interface address is already
 *      on this host, every endpoint host name resolves;
 *   3. PreUp hooks; the TUN device; the UDP port; the device with its key and peers;
 *   4. MTU, link up, addresses, routes for the peers' AllowedIPs (a /0 is routed as two halves, with each
 *      endpoint pinned to its current path so the tunnel never carries itself); the packet path warmed
 *      (gateway/warmup.ts); the UAPI socket; PostUp hooks;
 *   5. the pid file; then the daemon reports ready and the foreground command returns.
 * Bringing it down (SIGTERM, SIGINT, or `weft down`): PreDown hooks, everything above undone, PostDown hooks.
 */
import { lookup } from 'node:dns/promises';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { formatIssue, parseWgQuick, type WgQuickConfig } from '../config/wg-quick.js';
import { monotonicEpochMs } from '../io/clock.js';
import { Gateway } from './gateway.js';
import {
  addAddress,
  addRoute,
  hostAddresses,
  linkExists,
  pinHostRoute,
  routeTo,
  runHook,
  setLinkUp,
} from '../io/linux-net.js';
import { LinuxTun } from '../io/tun-linux.js';
import { UapiServer } from './uapi-server.js';
import { warmLivePath } from './warmup.js';
import { openBestBind } from '../io/udp-linux.js';
import { WireGuardInterface, type Admit } from './wireguard-interface.js';
import { formatAddress, parsePrefix, type Prefix } from '../net/ip.js';
import type { Endpoint } from '../net/endpoint.js';
import { Device } from '../wireguard/device.js';
import { UapiHandler } from '../wireguard/uapi.js';
import { UserError } from '../control/errors.js';

export const RUN_DIR = '/run/weft';
const INTERFACE_NAME = /^[a-zA-Z0-9_=+.-]{1,15}$/;

export function interfaceNameOf(file: string): string {
  return basename(file).replace(/\.conf$/, '');
}

export function pidFile(name: string): string {
  return `${RUN_DIR}/${name}.pid`;
}

export interface Resolved {
  config: WgQuickConfig;
  name: string;
  endpoints: (Endpoint | undefined)[];
}

/** Steps 1–2: everything that can be checked before touching the system. */
export async function prepare(file: string): Promise<Resolved> {
  const name = interfaceNameOf(file);
  if (!INTERFACE_NAME.test(name)) {
    throw new UserError(
      `${file}: the interface name "${name}" (from the file name) must be 1–15 of [a-zA-Z0-9_=+.-]`,
    );
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read: ${(e as Error).message}`);
  }
  const parsed = parseWgQuick(text, file);
  for (const w of parsed.warnings) process.stderr.write(`warning: ${formatIssue(w)}\n`);
  if (!parsed.ok) throw new UserError(parsed.errors.map(formatIssue).join('\n'));
  const config = parsed.config;

  if (await linkExists(name)) throw new UserError(`${file}: interface ${name} already exists`);
  if (existsSync(pidFile(name))) {
    const pid = Number(readFileSync(pidFile(name), 'utf8'));
    if (processAlive(pid)) throw new UserError(`${file}: ${name} is already up (pid ${pid})`);
  }
  const owners = await hostAddresses();
  for (const a of config.interface.addresses) {
    const text = formatAddress(a.address);
    const owner = owners.find((o) => o.address === text);
    if (owner)
      throw new UserError(`${file}: Address ${a.text} is already in use on interface ${owner.ifname}`);
  }
  const endpoints = await Promise.all(
    config.peers.map(async (peer): Promise<Endpoint | undefined> => {
      if (!peer.endpoint) return undefined;
      try {
        const r = await lookup(peer.endpoint.host, { verbatim: true });
        return { address: r.address, port: peer.endpoint.port };
      } catch (e) {
        throw new UserError(
          `${file}:${peer.line}: Endpoint: cannot resolve ${peer.endpoint.host}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
    }),
  );
  return { config, name, endpoints };
}

export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const HALVES: Record<4 | 6, string[]> = { 4: ['0.0.0.0/1', '128.0.0.0/1'], 6: ['::/1', '8000::/1'] };

function kernelRoutes(prefixes: readonly Prefix[]): Prefix[] {
  return prefixes.flatMap((p) =>
    p.bits > 0
      ? [p]
      : HALVES[p.family].map((h) => {
          const r = parsePrefix(h);
          if (!r.ok) throw new Error(r.error);
          return r.value;
        }),
  );
}

export interface Running {
  readonly name: string;
  readonly device: Device;
  readonly wg: WireGuardInterface;
  readonly gateway: Gateway;
  stop(): Promise<void>;
}

export interface BringUpOptions {
  /** Checks each decrypted packet before it reaches the TUN device (the people VPN's member firewall). */
  admit?: Admit;
  /**
   * Prefixes the gateway routes into the WireGuard device whatever its peers are (the people VPN routes its
   * whole member subnet; the device's cryptokey routing then picks the member). Default: the peers'
   * AllowedIPs, kept in step with UAPI changes.
   */
  routes?: readonly Prefix[];
}

/** Steps 3–5: brings the interface up in this process. */
export async function bringUp(
  r: Resolved,
  log: (line: string) => void = () => undefined,
  options: BringUpOptions = {},
): Promise<Running> {
  const { config, name } = r;
  const iface = config.interface;
  const undo: (() => Promise<void>)[] = [];
  const unwind = async (): Promise<void> => {
    for (const step of undo.reverse()) await step().catch((e: Error) => log(`cleanup: ${e.message}`));
    undo.length = 0;
  };
  try {
    for (const cmd of iface.preUp) await runHook(cmd, name);
    const tun = await LinuxTun.open(name, { mtu: iface.mtu });
    undo.push(() => tun.close());
    const bind = await openBestBind(iface.listenPort ?? 0);
    undo.push(() => bind.close());
    const device = new Device({ privateKey: iface.privateKey, mtu: iface.mtu, handshakeQueue: true });
    config.peers.forEach((peer, i) =>
      device.setPeer({
        publicKey: peer.publicKey,
        presharedKey: peer.presharedKey ?? null,
        endpoint: r.endpoints[i] ?? null,
        persistentKeepalive: peer.persistentKeepalive,
        allowedIps: peer.allowedIps,
      }),
    );
    const gateway = new Gateway(tun);
    const wg = new WireGuardInterface({
      name,
      device,
      bind,
      openBind: (port) => openBestBind(port),
      deliver: gateway.deliver,
      admit: options.admit,
    });
    undo.push(() => wg.close());
    const fixedRoutes = options.routes;
    const syncRoutes = (): void =>
      gateway.setRoutes(wg, fixedRoutes ? [...fixedRoutes] : device.allowedPrefixes());

    await setLinkUp(name, iface.mtu);
    for (const a of iface.addresses) await addAddress(name, a.text);
    const allowed = config.peers.flatMap((p) => p.allowedIps);
    if (iface.table !== 'off') {
      const table = iface.table === 'auto' ? undefined : iface.table;
      if (allowed.some((p) => p.bits === 0)) {
        for (const e of r.endpoints) {
          if (!e) continue;
          const path = await routeTo(e.address);
          if (path && path.dev !== name) undo.push(await pinHostRoute(e.address, path));
        }
      }
      for (const p of kernelRoutes(allowed)) await addRoute(name, p, table);
    }
    syncRoutes();
    gateway.start();
    wg.start();
    const target = { device, listenPort: wg.listenPort, addresses: iface.addresses, syncRoutes };
    // Twice: adding and removing the throwaway peer changes object layouts the first round's optimised code
    // relied on, and V8 discards that code; the second round optimises for the layouts that stay.
    await warmLivePath(target);
    const warm = await warmLivePath(target);
    log(
      warm.warmed
        ? `packet path warmed: ${warm.packets} echo replies in ${warm.ms.toFixed(0)} ms`
        : `packet path not warmed: ${warm.reason}`,
    );
    const uapi = await UapiServer.listen(
      name,
      new UapiHandler(device, {
        getListenPort: () => wg.listenPort,
        setListenPort: (port: number) => wg.setListenPort(port),
        now: monotonicEpochMs,
        emit: (actions) => wg.perform(actions),
        afterSet: syncRoutes,
      }),
    );
    undo.push(() => uapi.close());
    for (const cmd of iface.postUp) await runHook(cmd, name);

    mkdirSync(RUN_DIR, { recursive: true, mode: 0o755 });
    writeFileSync(pidFile(name), `${process.pid}\n`);
    undo.push(async () => rmSync(pidFile(name), { force: true }));
    log(`${name} is up: listening on UDP port ${wg.listenPort}, ${config.peers.length} peer(s)`);

    let stopping: Promise<void> | undefined;
    // As the cross-platform interface asks: removing the UAPI socket stops the interface.
    const watch = setInterval(() => {
      if (!existsSync(uapi.path)) {
        log(`${uapi.path} was removed: stopping`);
        void stop();
      }
    }, 1000);
    watch.unref();
    undo.push(async () => clearInterval(watch));
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        for (const cmd of iface.preDown)
          await runHook(cmd, name).catch((e: Error) => log(`PreDown: ${e.message}`));
        await unwind();
        for (const cmd of iface.postDown)
          await runHook(cmd, name).catch((e: Error) => log(`PostDown: ${e.message}`));
        log(`${name} is down`);
      })();
      return stopping;
    };
    return { name, device, wg, gateway, stop };
  } catch (e) {
    await unwind();
    throw e;
  }
}
