/**
 * The configurations the bench compares, each brought up on the rig, measured, and torn down before the next:
 *
 *   plain       no tunnel: iperf3/ping straight over the veth (the ceiling)
 *   wg-go       wireguard-go <-> wireguard-go (Debian package, configured with `wg`)
 *   openvpn     OpenVPN 2.6 <-> OpenVPN 2.6: UDP, point-to-point TLS with self-signed EC (prime256v1)
 *               certificates pinned by --peer-fingerprint, AES-256-GCM, tun MTU 1420 like WireGuard's
 *   weft        Weft <-> Weft (`node dist/src/cli/main.js up --foreground NAME.conf`, wg-quick files)
 *   weft-wg-go  Weft (server) <-> wireguard-go (client)
 *   ovpn-server OpenVPN 2.6 client -> OpenVPN 2.6 server (`--server`, a CA made with openssl, tls-crypt-v2,
 *               AES-256-GCM, UDP): what a team runs today
 *   weft-ovpn   the same OpenVPN 2.6 client -> `weft server run` (Weft's OpenVPN server), with the `.ovpn`
 *               that `weft member config --openvpn` prints, AES-256-GCM, UDP
 *
 * Interface names come from lab.ifname(), so they are unique machine-wide (wireguard-go's and Weft's UAPI
 * sockets share /var/run/wireguard across namespaces).
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrivateKey } from '../src/crypto/keys.js';
import {
  run,
  startWireguardGo,
  waitFor,
  type ManagedProcess,
  type Netns,
  type WireguardGo,
} from '../test/interop/harness.js';
import type { ConfigId } from './options.js';
import { OVERLAY, UNDERLAY, WEFT_RUN_DIR, type Rig } from './rig.js';

/** The Weft command (dist/bench/ -> dist/src/cli/main.js). */
export const WEFT_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

const SERVER_PORT = 51820;
const CLIENT_PORT = 51821;
const OPENVPN_PORT = 1194;
const TUNNEL_MTU = 1420;
const START_TIMEOUT_MS = 30_000;

export interface ConfigDef {
  id: ConfigId;
  /** Short label for the table and chart. */
  label: string;
  description: string;
  /** Implementation at each end ('kernel' for plain). */
  server: string;
  client: string;
}

export const CONFIGS: Record<ConfigId, ConfigDef> = {
  plain: {
    id: 'plain',
    label: 'plaintext',
    description: 'no tunnel: straight over the veth pair (the ceiling)',
    server: 'kernel',
    client: 'kernel',
  },
  'wg-go': {
    id: 'wg-go',
    label: 'wg-go↔wg-go',
    description: 'wireguard-go <-> wireguard-go (Debian package, configured with wg)',
    server: 'wireguard-go',
    client: 'wireguard-go',
  },
  openvpn: {
    id: 'openvpn',
    label: 'OpenVPN↔OpenVPN',
    description:
      'OpenVPN 2.6 <-> OpenVPN 2.6: UDP, TLS (self-signed EC certs, peer fingerprints), AES-256-GCM',
    server: 'openvpn',
    client: 'openvpn',
  },
  weft: {
    id: 'weft',
    label: 'Weft↔Weft',
    description: 'Weft <-> Weft (weft up --foreground, wg-quick configuration files)',
    server: 'weft',
    client: 'weft',
  },
  'weft-wg-go': {
    id: 'weft-wg-go',
    label: 'Weft↔wg-go',
    description: 'Weft (server) <-> wireguard-go (client)',
    server: 'weft',
    client: 'wireguard-go',
  },
  'ovpn-server': {
    id: 'ovpn-server',
    label: 'OpenVPN cl→OpenVPN srv',
    description: 'OpenVPN 2.6 client -> OpenVPN 2.6 server (--server, CA, tls-crypt-v2, AES-256-GCM, UDP)',
    server: 'openvpn',
    client: 'openvpn',
  },
  'weft-ovpn': {
    id: 'weft-ovpn',
    label: 'OpenVPN cl→Weft srv',
    description: 'the same OpenVPN 2.6 client -> weft server run (its .ovpn profile, AES-256-GCM, UDP)',
    server: 'weft',
    client: 'openvpn',
  },
};

/** One end of a tunnel: the process whose CPU time and memory are the tunnel's cost. */
export interface TunnelEnd {
  side: 'server' | 'client';
  impl: string;
  ifname: string;
  pid: number;
}

export interface Tunnel {
  def: ConfigDef;
  /** The server-side address that iperf3 and ping in the client namespace target. */
  target: string;
  ends: TunnelEnd[];
  /** Stops the tunnel processes (bounded); safe to call more than once. */
  down(): Promise<void>;
}

/** Brings up configuration `id` on the rig and waits until a ping crosses it. */
export async function bringUp(rig: Rig, id: ConfigId): Promise<Tunnel> {
  const def = CONFIGS[id];
  const stops: (() => Promise<unknown>)[] = [];
  let stopping: Promise<void> | undefined;
  const down = (): Promise<void> => {
    stopping ??= (async () => {
      const results = await Promise.allSettled(stops.reverse().map((stop) => stop()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    })();
    return stopping;
  };
  try {
    let target: string;
    let ends: TunnelEnd[];
    switch (id) {
      case 'plain':
        target = UNDERLAY.server;
        ends = [];
        break;
      case 'wg-go':
      case 'weft':
      case 'weft-wg-go': {
        const serverKey = PrivateKey.generate();
        const clientKey = PrivateKey.generate();
        const serverImpl = id === 'wg-go' ? 'wireguard-go' : 'weft';
        const clientImpl = id === 'weft' ? 'weft' : 'wireguard-go';
        const server = await startWg(rig, rig.server, serverImpl, 'ws', {
          key: serverKey,
          port: SERVER_PORT,
          address: OVERLAY.server,
          peerKey: clientKey,
          peerAddress: OVERLAY.client,
        });
        stops.push(server.stop);
        const client = await startWg(rig, rig.client, clientImpl, 'wc', {
          key: clientKey,
          port: CLIENT_PORT,
          address: OVERLAY.client,
          peerKey: serverKey,
          peerAddress: OVERLAY.server,
          endpoint: `${UNDERLAY.server}:${SERVER_PORT}`,
        });
        stops.push(client.stop);
        target = OVERLAY.server;
        ends = [
          { side: 'server', impl: serverImpl, ifname: server.ifname, pid: server.pid },
          { side: 'client', impl: clientImpl, ifname: client.ifname, pid: client.pid },
        ];
        break;
      }
      case 'ovpn-server':
      case 'weft-ovpn': {
        const pair = id === 'ovpn-server' ? await startOpenvpnServer(rig) : await startWeftOpenvpn(rig);
        stops.push(
          () => pair.client.stop(),
          () => pair.server.stop(),
        );
        target = OVERLAY.server;
        ends = [
          { side: 'server', impl: def.server, ifname: pair.serverIf, pid: pair.server.pid },
          { side: 'client', impl: 'openvpn', ifname: pair.clientIf, pid: pair.client.pid },
        ];
        break;
      }
      case 'openvpn': {
        const pair = await startOpenvpnPair(rig);
        stops.push(
          () => pair.server.stop(),
          () => pair.client.stop(),
        );
        target = OVERLAY.server;
        ends = [
          { side: 'server', impl: 'openvpn', ifname: pair.serverIf, pid: pair.server.pid },
          { side: 'client', impl: 'openvpn', ifname: pair.clientIf, pid: pair.client.pid },
        ];
        break;
      }
    }
    await waitFor(
      `a ping through ${def.label} to ${target}`,
      async () =>
        (await rig.client.exec('ping', ['-c', '1', '-W', '1', target], { allowFail: true })).code === 0,
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 100 },
    );
    return { def, target, ends, down };
  } catch (error) {
    await down().catch(() => undefined);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// WireGuard ends: wireguard-go or Weft

interface WgEndConfig {
  key: PrivateKey;
  port: number;
  address: string;
  peerKey: PrivateKey;
  peerAddress: string;
  endpoint?: string;
}

interface WgEnd {
  ifname: string;
  pid: number;
  stop(): Promise<unknown>;
}

async function startWg(rig: Rig, ns: Netns, impl: string, local: string, c: WgEndConfig): Promise<WgEnd> {
  if (impl === 'weft') {
    const ifname = rig.lab.ifname(`${local}w`);
    const weft = await startWeft(rig, ns, ifname, wgQuickText(c));
    return { ifname, pid: weft.pid, stop: () => weft.stop() };
  }
  const ifname = rig.lab.ifname(`${local}g`);
  const wgo: WireguardGo = await startWireguardGo(ns, ifname, {
    privateKey: c.key.toBase64(),
    listenPort: c.port,
    addresses: [`${c.address}/${OVERLAY.bits}`],
    mtu: TUNNEL_MTU,
    peers: [
      {
        publicKey: c.peerKey.publicKey().toBase64(),
        allowedIps: [`${c.peerAddress}/32`],
        ...(c.endpoint === undefined ? {} : { endpoint: c.endpoint }),
      },
    ],
  });
  return { ifname, pid: wgo.process.pid, stop: () => wgo.stop() };
}

/** A wg-quick file for `weft up`. */
function wgQuickText(c: WgEndConfig): string {
  const lines = [
    '[Interface]',
    `PrivateKey = ${c.key.toBase64()}`,
    `ListenPort = ${c.port}`,
    `Address = ${c.address}/${OVERLAY.bits}`,
    `MTU = ${TUNNEL_MTU}`,
    '',
    '[Peer]',
    `PublicKey = ${c.peerKey.publicKey().toBase64()}`,
    `AllowedIPs = ${c.peerAddress}/32`,
  ];
  if (c.endpoint !== undefined) lines.push(`Endpoint = ${c.endpoint}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Runs `weft up --foreground DIR/IFNAME.conf` in `ns` and waits (bounded) until it is up: its pid file exists
 * and `wg show IFNAME` answers over its UAPI socket.
 */
export async function startWeft(
  rig: Rig,
  ns: Netns,
  ifname: string,
  config: string,
): Promise<ManagedProcess> {
  rig.lab.registerWgInterface(ifname); // cleanup removes the UAPI socket if Weft could not
  const dir = rig.dir(`${ifname}-conf`);
  const file = path.join(dir, `${ifname}.conf`);
  fs.writeFileSync(file, config, { mode: 0o600 });
  // BENCH_WEFT_NODE_ARGS: extra node arguments for Weft, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile
  // it (node refuses --cpu-prof in NODE_OPTIONS).
  const nodeArgs = (process.env.BENCH_WEFT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = ns.spawn(process.execPath, [...nodeArgs, WEFT_MAIN, 'up', '--foreground', file]);
  try {
    await waitFor(
      `Weft ${ifname} to come up`,
      async () => {
        if (!proc.running) throw new Error(`weft exited: ${proc.describe()}`);
        if (!fs.existsSync(path.join(WEFT_RUN_DIR, `${ifname}.pid`))) return false;
        return (await ns.exec('wg', ['show', ifname], { allowFail: true })).code === 0;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 50 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${proc.describe()}`, { cause: error });
    });
    return proc;
  } catch (error) {
    await proc.stop().catch(() => undefined);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// OpenVPN

interface Cert {
  cert: string;
  key: string;
  fingerprint: string;
}

async function makeCert(rig: Rig, dir: string, name: string): Promise<Cert> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '2',
    '-subj',
    `/CN=weft-bench-${rig.lab.prefix}-${name}`,
  ]);
  fs.chmodSync(key, 0o600);
  return { cert, key, fingerprint: new X509Certificate(fs.readFileSync(cert)).fingerprint256 };
}

async function startOpenvpnPair(
  rig: Rig,
): Promise<{ server: ManagedProcess; client: ManagedProcess; serverIf: string; clientIf: string }> {
  const dir = rig.dir('openvpn');
  const serverCert = await makeCert(rig, dir, 'server');
  const clientCert = await makeCert(rig, dir, 'client');
  const common = (ifname: string, own: Cert, peer: Cert, local: string, remote: string): string[] => [
    '--verb',
    '3',
    '--disable-dco',
    '--dev',
    ifname,
    '--dev-type',
    'tun',
    '--proto',
    'udp',
    '--ifconfig',
    local,
    remote,
    '--tun-mtu',
    String(TUNNEL_MTU),
    '--cert',
    own.cert,
    '--key',
    own.key,
    '--peer-fingerprint',
    peer.fingerprint,
    '--dh',
    'none',
    '--data-ciphers',
    'AES-256-GCM',
    '--ping',
    '10',
  ];
  const serverIf = rig.lab.ifname('ovs');
  const clientIf = rig.lab.ifname('ovc');
  const server = rig.server.spawn('openvpn', [
    ...common(serverIf, serverCert, clientCert, OVERLAY.server, OVERLAY.client),
    '--tls-server',
    '--local',
    UNDERLAY.server,
    '--lport',
    String(OPENVPN_PORT),
  ]);
  let client: ManagedProcess | undefined;
  try {
    await server.waitForOutput(
      /UDPv4 link local \(bound\)|Initialization Sequence Completed/,
      START_TIMEOUT_MS,
    );
    client = rig.client.spawn('openvpn', [
      ...common(clientIf, clientCert, serverCert, OVERLAY.client, OVERLAY.server),
      '--tls-client',
      '--nobind',
      '--remote',
      UNDERLAY.server,
      String(OPENVPN_PORT),
    ]);
    await client.waitForOutput(/Initialization Sequence Completed/, START_TIMEOUT_MS);
    await server.waitForOutput(/Initialization Sequence Completed/, START_TIMEOUT_MS);
    return { server, client, serverIf, clientIf };
  } catch (error) {
    await Promise.allSettled([server.stop(), client?.stop()]);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// OpenVPN client against a server: OpenVPN's own, or Weft's

interface ServerPair {
  server: ManagedProcess;
  client: ManagedProcess;
  serverIf: string;
  clientIf: string;
}

/** Client options both servers are measured with (the profile or the files give the rest). */
function clientOptions(ifname: string): string[] {
  return [
    '--verb',
    '3',
    '--disable-dco',
    '--dev',
    ifname,
    '--dev-type',
    'tun',
    '--proto',
    'udp',
    '--data-ciphers',
    'AES-256-GCM',
    '--nobind',
  ];
}

async function startClient(rig: Rig, args: readonly string[]): Promise<ManagedProcess> {
  const client = rig.client.spawn('openvpn', args);
  try {
    await client.waitForOutput(/Initialization Sequence Completed/, START_TIMEOUT_MS);
    return client;
  } catch (error) {
    await client.stop().catch(() => undefined);
    throw error;
  }
}

/** A certificate signed by `ca` (openssl), for OpenVPN's own server and its client. */
async function caSigned(
  dir: string,
  name: string,
  ca: Cert,
  eku: string,
): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, `extendedKeyUsage=${eku}\nkeyUsage=digitalSignature\n`);
  await run('openssl', [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    csr,
    '-subj',
    `/CN=${name}`,
  ]);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  fs.chmodSync(key, 0o600);
  return { cert, key };
}

async function startOpenvpnServer(rig: Rig): Promise<ServerPair> {
  const dir = rig.dir('openvpn-server');
  const ca = await makeCert(rig, dir, 'ca');
  const server = await caSigned(dir, 'server', ca, 'serverAuth');
  const client = await caSigned(dir, 'client', ca, 'clientAuth');
  const serverKey = path.join(dir, 'tc2-server.key');
  const clientKey = path.join(dir, 'tc2-client.key');
  await run('openvpn', ['--genkey', 'tls-crypt-v2-server', serverKey]);
  await run('openvpn', ['--tls-crypt-v2', serverKey, '--genkey', 'tls-crypt-v2-client', clientKey]);
  const serverIf = rig.lab.ifname('osv');
  const clientIf = rig.lab.ifname('ocl');
  const proc = rig.server.spawn('openvpn', [
    '--verb',
    '3',
    '--disable-dco',
    '--dev',
    serverIf,
    '--dev-type',
    'tun',
    '--proto',
    'udp',
    '--local',
    UNDERLAY.server,
    '--lport',
    String(OPENVPN_PORT),
    '--server',
    '10.100.0.0',
    '255.255.255.0',
    '--topology',
    'subnet',
    '--ca',
    ca.cert,
    '--cert',
    server.cert,
    '--key',
    server.key,
    '--dh',
    'none',
    '--tls-crypt-v2',
    serverKey,
    '--data-ciphers',
    'AES-256-GCM',
    '--keepalive',
    '10',
    '60',
  ]);
  try {
    await proc.waitForOutput(/Initialization Sequence Completed/, START_TIMEOUT_MS);
    const c = await startClient(rig, [
      ...clientOptions(clientIf),
      '--client',
      '--remote',
      UNDERLAY.server,
      String(OPENVPN_PORT),
      '--ca',
      ca.cert,
      '--cert',
      client.cert,
      '--key',
      client.key,
      '--tls-crypt-v2',
      clientKey,
      '--remote-cert-tls',
      'server',
    ]);
    return { server: proc, client: c, serverIf, clientIf };
  } catch (error) {
    await proc.stop().catch(() => undefined);
    throw error;
  }
}

async function startWeftOpenvpn(rig: Rig): Promise<ServerPair> {
  const data = rig.dir('weft-openvpn');
  const serverIf = rig.lab.ifname('wsv');
  const clientIf = rig.lab.ifname('wcl');
  rig.lab.registerWgInterface(serverIf);
  const weft = (args: readonly string[]) =>
    rig.server.exec(process.execPath, [WEFT_MAIN, ...args, '--data', data], { timeoutMs: 30_000 });
  await weft([
    'server',
    'init',
    '--endpoint',
    `${UNDERLAY.server}:${SERVER_PORT}`,
    '--subnet',
    '10.100.0.0/24',
    '--interface',
    serverIf,
    '--default-policy',
    'deny',
  ]);
  await weft(['member', 'add', 'bench', '--ip', OVERLAY.client]);
  const profile = (await weft(['member', 'config', 'bench', '--openvpn'])).stdout;
  const file = path.join(data, 'bench.ovpn');
  fs.writeFileSync(file, profile, { mode: 0o600 });
  const nodeArgs = (process.env.BENCH_WEFT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = rig.server.spawn(process.execPath, [...nodeArgs, WEFT_MAIN, 'server', 'run', '--data', data]);
  try {
    await proc.waitForOutput(/ready/, START_TIMEOUT_MS);
    const c = await startClient(rig, ['--config', file, ...clientOptions(clientIf)]);
    return { server: proc, client: c, serverIf, clientIf };
  } catch (error) {
    await proc.stop().catch(() => undefined);
    throw error;
  }
}
