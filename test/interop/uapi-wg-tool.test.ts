/**
 * The unmodified `wg` tool (wireguard-tools) against Weft's UAPI: a real UapiServer in this test process on
 * /var/run/wireguard/NAME.sock, and `wg show`, `show dump`, `showconf`, `set`, `setconf`, `syncconf` run as
 * child processes (asynchronously: the server shares this event loop). No TUN device is needed: `wg` only
 * looks for the socket. Interface names are unique machine-wide ("wu" + 8 random base36 characters) and every
 * socket is closed and removed in `after`, even when a test fails.
 *
 * The second suite checks the socket mechanics (directory, mode, stale and live sockets) in a temporary
 * directory and needs neither root nor `wg`.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PresharedKey, PrivateKey, PublicKey } from '../../src/crypto/keys.js';
import { UapiServer } from '../../src/gateway/uapi-server.js';
import { Device } from '../../src/wireguard/device.js';
import { UapiHandler, type UapiHandlerOptions, type UapiHooks } from '../../src/wireguard/uapi.js';
import { ipv4, payloadOf } from '../support/packets.js';
import { Network, START, messageType, prefix } from '../support/sim.js';
import { WG_RUN_DIR, interopSkip, parseWgDump, run } from './harness.js';

interface Iface {
  name: string;
  device: Device;
  server: UapiServer;
  state: { port: number; fwmark: number; portCalls: number[] };
}

const servers: UapiServer[] = [];
const ourSockets = new Set<string>();
let tmp = '';

// Last resort if the process dies before `after` runs: remove the sockets this file created (a closed server
// has already removed its own; these names are unique to this process).
process.on('exit', () => {
  for (const file of ourSockets) fs.rmSync(file, { force: true });
});

function uniqueName(): string {
  return `wu${randomInt(36 ** 8)
    .toString(36)
    .padStart(8, '0')}`;
}

async function serve(
  device: Device,
  options: {
    hooks?: Partial<UapiHooks>;
    handler?: UapiHandlerOptions;
    maxConnections?: number;
    dir?: string;
  } = {},
): Promise<Iface> {
  const state = { port: 51820, fwmark: 0, portCalls: [] as number[] };
  const hooks: UapiHooks = {
    getListenPort: () => state.port,
    setListenPort: (port) => {
      state.portCalls.push(port);
      state.port = port;
    },
    getFwmark: () => state.fwmark,
    setFwmark: (mark) => {
      state.fwmark = mark;
    },
    ...options.hooks,
  };
  const name = uniqueName();
  const server = await UapiServer.listen(name, new UapiHandler(device, hooks, options.handler), {
    dir: options.dir ?? WG_RUN_DIR,
    ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
  });
  servers.push(server);
  ourSockets.add(server.path);
  return { name, device, server, state };
}

async function wg(...args: string[]): Promise<string> {
  return (await run('wg', args, { timeoutMs: 60_000 })).stdout;
}

function newDevice(): Device {
  return new Device({ privateKey: PrivateKey.generate() });
}

function b64(key: { toBase64(): string }): string {
  return key.toBase64();
}

async function writeFile(name: string, content: string): Promise<string> {
  const file = path.join(tmp, `${randomInt(1e9)}-${name}`);
  await fsp.writeFile(file, content, { mode: 0o600 });
  return file;
}

/** Raw bytes over the socket: everything received until the server closes or `quietMs` pass in silence. */
function rawExchange(
  socketPath: string,
  data: string | Uint8Array,
  quietMs = 300,
): Promise<{ received: string; closed: boolean }> {
  return new Promise((resolve) => {
    const client = connect({ path: socketPath });
    let received = '';
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      client.destroy();
      resolve({ received, closed });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), quietMs);
    };
    client.on('connect', () => {
      client.write(data);
      arm();
    });
    client.on('data', (chunk) => {
      received += chunk.toString('latin1');
      arm();
    });
    client.on('error', () => undefined); // EPIPE / ECONNRESET when the server hangs up on an oversize request
    client.on('close', () => finish(true));
  });
}

describe('UAPI with the real wg tool', { skip: interopSkip(['wg']) }, () => {
  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'weft-uapi-'));
  });

  after(async () => {
    const results = await Promise.allSettled(servers.map((s) => s.close()));
    for (const file of ourSockets) fs.rmSync(file, { force: true });
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });

  it('wg show lists the interface and its peer', async () => {
    const device = newDevice();
    const peer = PrivateKey.generate().publicKey();
    device.setPeer({
      publicKey: peer,
      presharedKey: PresharedKey.generate(),
      endpoint: { address: '192.0.2.1', port: 51820 },
      allowedIps: [prefix('10.0.0.0/24'), prefix('fd00::/64')],
      persistentKeepalive: 25,
    });
    const { name } = await serve(device);
    assert.equal(
      await wg('show', name),
      [
        `interface: ${name}`,
        `  public key: ${b64(device.publicKey!)}`,
        '  private key: (hidden)',
        '  listening port: 51820',
        '',
        `peer: ${b64(peer)}`,
        '  preshared key: (hidden)',
        '  endpoint: 192.0.2.1:51820',
        '  allowed ips: 10.0.0.0/24, fd00::/64',
        '  persistent keepalive: every 25 seconds',
        '',
      ].join('\n'),
    );
    assert.equal(await wg('show', name, 'peers'), `${b64(peer)}\n`);
    assert.equal(await wg('show', name, 'endpoints'), `${b64(peer)}\t192.0.2.1:51820\n`);
  });

  it('wg show dump prints every field exactly', async () => {
    const net = new Network();
    const a = net.add('a', '192.0.2.1', 51820);
    const b = net.add('b', '192.0.2.2', 51821);
    net.link(a, b, ['10.0.0.1/32', 'fd00::1/128'], ['10.0.0.2/32', 'fd00::2/128'], { keepalive: 25 });
    const psk = PresharedKey.generate();
    a.device.setPeer({ publicKey: b.key.publicKey(), presharedKey: psk });
    b.device.setPeer({ publicKey: a.key.publicKey(), presharedKey: psk });
    net.send(a, ipv4('10.0.0.1', '10.0.0.2', 'hello'));
    net.send(b, ipv4('10.0.0.2', '10.0.0.1', 'hello back'));
    const lonely = PrivateKey.generate().publicKey();
    a.device.setPeer({ publicKey: lonely });
    const iface = await serve(a.device, { hooks: { now: () => net.now } });
    iface.state.fwmark = 0x2a;

    const status = a.device.peerStatus(b.key.publicKey(), net.now)!;
    assert.ok(status.rxBytes > 0 && status.txBytes > 0);
    const dump = await wg('show', iface.name, 'dump');
    assert.equal(
      dump,
      [
        [b64(a.key), b64(a.key.publicKey()), '51820', '0x2a'],
        [
          b64(b.key.publicKey()),
          psk.toBase64(),
          '192.0.2.2:51821',
          '10.0.0.2/32,fd00::2/128',
          String(START / 1000),
          String(status.rxBytes),
          String(status.txBytes),
          '25',
        ],
        [b64(lonely), '(none)', '(none)', '(none)', '0', '0', '0', 'off'],
      ]
        .map((fields) => `${fields.join('\t')}\n`)
        .join(''),
    );
    // harness.parseWgDump reads the fwmark field as decimal, but wg prints it in hex: parse with it off.
    iface.state.fwmark = 0;
    const parsed = parseWgDump(await wg('show', iface.name, 'dump'));
    assert.equal(parsed.interface.fwmark, null);
    assert.deepEqual(parsed.peers[0], {
      publicKey: b64(b.key.publicKey()),
      presharedKey: psk.toBase64(),
      endpoint: '192.0.2.2:51821',
      allowedIps: ['10.0.0.2/32', 'fd00::2/128'],
      latestHandshake: START / 1000,
      rxBytes: status.rxBytes,
      txBytes: status.txBytes,
      persistentKeepalive: 25,
    });
  });

  it('wg showconf round-trips through wg setconf on a second interface', async () => {
    const device = newDevice();
    device.setPeer({
      publicKey: PrivateKey.generate().publicKey(),
      presharedKey: PresharedKey.generate(),
      endpoint: { address: 'fd00::7', port: 4500 },
      allowedIps: [prefix('10.1.0.0/16'), prefix('fd00:1::/48')],
      persistentKeepalive: 15,
    });
    device.setPeer({
      publicKey: PrivateKey.generate().publicKey(),
      endpoint: { address: '198.51.100.3', port: 51820 },
      allowedIps: [prefix('0.0.0.0/0')],
    });
    device.setPeer({ publicKey: PrivateKey.generate().publicKey() });
    const a = await serve(device);
    a.state.port = 43210;
    a.state.fwmark = 7;
    const conf = await wg('showconf', a.name);
    assert.match(conf, /^\[Interface\]\nListenPort = 43210\nFwMark = 0x7\nPrivateKey = /);

    const b = await serve(new Device());
    b.device.setPeer({ publicKey: PrivateKey.generate().publicKey() }); // replaced by setconf
    await wg('setconf', b.name, await writeFile('a.conf', conf));
    assert.equal(await wg('showconf', b.name), conf);
    assert.deepEqual(b.state.portCalls, [43210]);
    assert.equal(b.state.fwmark, 7);
    assert.ok(b.device.privateKey?.equals(device.privateKey!));
    assert.deepEqual(
      b.device
        .peerStatuses(0)
        .map((p) => [p.publicKey.toBase64(), p.allowedIps, p.endpoint, p.persistentKeepalive]),
      device
        .peerStatuses(0)
        .map((p) => [p.publicKey.toBase64(), p.allowedIps, p.endpoint, p.persistentKeepalive]),
    );
  });

  it('wg addconf adds peers and keeps the existing ones', async () => {
    const device = newDevice();
    const existing = PrivateKey.generate().publicKey();
    device.setPeer({ publicKey: existing, allowedIps: [prefix('10.0.0.0/24')] });
    const iface = await serve(device);
    const added = PrivateKey.generate().publicKey();
    const conf = `[Peer]\nPublicKey = ${b64(added)}\nAllowedIPs = 10.0.1.0/24\nEndpoint = [2001:db8::1]:51820\n`;
    await wg('addconf', iface.name, await writeFile('add.conf', conf));
    assert.equal(
      await wg('show', iface.name, 'allowed-ips'),
      `${b64(existing)}\t10.0.0.0/24\n${b64(added)}\t10.0.1.0/24\n`,
    );
    assert.deepEqual(device.peerStatus(added, 0)?.endpoint, { address: '2001:db8::1', port: 51820 });
    assert.deepEqual(iface.state.portCalls, []);
  });

  it('wg set adds and updates a peer, then removes it', async () => {
    const iface = await serve(newDevice());
    const peer = PrivateKey.generate().publicKey();
    await wg(
      'set',
      iface.name,
      'peer',
      b64(peer),
      'allowed-ips',
      '10.0.0.0/24,fd00::/64',
      'endpoint',
      '127.0.0.1:51820',
      'persistent-keepalive',
      '25',
    );
    let status = iface.device.peerStatus(peer, 0)!;
    assert.deepEqual(status.allowedIps, ['10.0.0.0/24', 'fd00::/64']);
    assert.deepEqual(status.endpoint, { address: '127.0.0.1', port: 51820 });
    assert.equal(status.persistentKeepalive, 25);

    // allowed-ips replaces; a link-local endpoint keeps its zone; keepalive off.
    await wg(
      'set',
      iface.name,
      'peer',
      b64(peer),
      'allowed-ips',
      '10.9.0.1/16',
      'endpoint',
      '[fe80::1%lo]:7',
    );
    await wg('set', iface.name, 'peer', b64(peer), 'persistent-keepalive', 'off');
    status = iface.device.peerStatus(peer, 0)!;
    assert.deepEqual(status.allowedIps, ['10.9.0.0/16']);
    assert.deepEqual(status.endpoint, { address: 'fe80::1%lo', port: 7 });
    assert.equal(status.persistentKeepalive, 0);
    assert.equal(await wg('show', iface.name, 'endpoints'), `${b64(peer)}\t[fe80::1%lo]:7\n`);

    await wg('set', iface.name, 'peer', b64(peer), 'remove');
    assert.equal(iface.device.hasPeer(peer), false);
    assert.equal(await wg('show', iface.name, 'peers'), '');
  });

  it('wg set private-key FILE and listen-port (the hook is invoked)', async () => {
    const iface = await serve(newDevice());
    const key = PrivateKey.generate();
    const keyFile = await writeFile('private.key', `${key.toBase64()}\n`);
    await wg('set', iface.name, 'listen-port', '41414', 'private-key', keyFile);
    assert.deepEqual(iface.state.portCalls, [41414]);
    assert.ok(iface.device.privateKey?.equals(key));
    assert.equal(await wg('show', iface.name, 'listen-port'), '41414\n');
    assert.equal(await wg('show', iface.name, 'public-key'), `${b64(key.publicKey())}\n`);
    await wg('set', iface.name, 'private-key', '/dev/null'); // an empty key file clears the key
    assert.equal(iface.device.privateKey, undefined);
    assert.equal(await wg('show', iface.name, 'private-key'), '(none)\n');
  });

  it('a refused set prints the errno message and changes nothing', async () => {
    const iface = await serve(newDevice(), {
      hooks: {
        setListenPort: () => {
          throw new Error('EADDRINUSE');
        },
      },
    });
    const peer = PrivateKey.generate().publicKey();
    const result = await run('wg', ['set', iface.name, 'listen-port', '53', 'peer', b64(peer)], {
      allowFail: true,
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /Unable to modify interface: Address already in use/);
    assert.equal(iface.device.hasPeer(peer), false);
  });

  it('wg syncconf removes peers not in the file and leaves the others’ sessions untouched', async () => {
    const net = new Network();
    const a = net.add('a', '192.0.2.1', 51820);
    const b = net.add('b', '192.0.2.2', 51820);
    const c = net.add('c', '192.0.2.3', 51820);
    net.link(a, b, ['10.0.0.1/32'], ['10.0.0.2/32']);
    net.link(a, c, ['10.0.0.1/32'], ['10.0.0.3/32']);
    net.send(a, ipv4('10.0.0.1', '10.0.0.2', 'before'));
    net.send(b, ipv4('10.0.0.2', '10.0.0.1', 'reply'));
    const iface = await serve(a.device, { hooks: { now: () => net.now } });
    const bKey = b.key.publicKey();
    const before = a.device.peerStatus(bKey, net.now)!;
    assert.ok(before.hasSession);
    const initiations = net.wire.filter((d) => messageType(d) === 1).length;

    // The file keeps b (with one more allowed IP) and drops c.
    const conf = await wg('showconf', iface.name);
    const sections = conf.split('\n\n');
    const kept = sections.filter((s) => !s.includes(c.key.publicKey().toBase64()));
    assert.equal(kept.length, sections.length - 1);
    const file = await writeFile(
      'sync.conf',
      kept.join('\n\n').replace('AllowedIPs = 10.0.0.2/32', 'AllowedIPs = 10.0.0.2/32, 10.0.2.0/24'),
    );
    await wg('syncconf', iface.name, file);

    assert.equal(a.device.hasPeer(c.key.publicKey()), false);
    const afterSync = a.device.peerStatus(bKey, net.now)!;
    assert.deepEqual(afterSync.allowedIps, ['10.0.0.2/32', '10.0.2.0/24']);
    assert.equal(afterSync.rxBytes, before.rxBytes);
    assert.equal(afterSync.txBytes, before.txBytes);
    assert.equal(afterSync.lastHandshake, before.lastHandshake);
    assert.ok(afterSync.hasSession, 'the session survived');
    net.send(a, ipv4('10.0.0.1', '10.0.0.2', 'after'));
    assert.deepEqual(b.delivered.map(payloadOf), ['before', 'after']);
    assert.equal(net.wire.filter((d) => messageType(d) === 1).length, initiations, 'no new handshake');
    const dump = parseWgDump(await wg('show', iface.name, 'dump'));
    assert.equal(dump.peers.length, 1);
    assert.ok((dump.peers[0]?.txBytes ?? 0) > before.txBytes);
  });

  it('1,000 peers with one wg setconf, and with one wg set', async (t) => {
    const peers = Array.from({ length: 1000 }, (_, i) => ({
      key: PublicKey.fromBytes(randomBytes(32)).toBase64(),
      ip: `10.${(i >> 8) & 255}.${i & 255}.1/32`,
      endpoint: `192.0.2.${(i % 250) + 1}:${20000 + i}`,
    }));
    const conf =
      `[Interface]\nPrivateKey = ${PrivateKey.generate().toBase64()}\nListenPort = 51999\n\n` +
      peers
        .map((p) => `[Peer]\nPublicKey = ${p.key}\nAllowedIPs = ${p.ip}\nEndpoint = ${p.endpoint}\n`)
        .join('\n');
    const first = await serve(new Device());
    const file = await writeFile('thousand.conf', conf);
    let start = performance.now();
    await wg('setconf', first.name, file);
    const setconfMs = performance.now() - start;
    start = performance.now();
    const listed = (await wg('show', first.name, 'peers')).trim().split('\n');
    const showMs = performance.now() - start;
    assert.equal(listed.length, 1000);
    assert.deepEqual(new Set(listed), new Set(peers.map((p) => p.key)));
    assert.equal(first.device.peerCount, 1000);

    const second = await serve(newDevice());
    const args = ['set', second.name];
    for (const p of peers) args.push('peer', p.key, 'allowed-ips', p.ip, 'endpoint', p.endpoint);
    start = performance.now();
    await wg(...args);
    const setMs = performance.now() - start;
    assert.equal((await wg('show', second.name, 'peers')).trim().split('\n').length, 1000);
    assert.deepEqual(second.device.peerStatuses(0)[999]?.allowedIps, [peers[999]!.ip]);

    const timing =
      `1,000 peers: wg setconf ${setconfMs.toFixed(0)} ms, wg show peers ${showMs.toFixed(0)} ms, ` +
      `one wg set ${setMs.toFixed(0)} ms`;
    t.diagnostic(timing);
    process.stderr.write(`uapi-wg-tool: ${timing}\n`);
  });

  it('malformed requests over the socket get errno= or a closed connection, never a crash', async () => {
    const device = newDevice();
    const peer = PrivateKey.generate().publicKey();
    device.setPeer({ publicKey: peer, allowedIps: [prefix('10.0.0.0/24')] });
    const iface = await serve(device, { handler: { maxRequestBytes: 64 * 1024 }, maxConnections: 4 });
    const socket = iface.server.path;

    assert.deepEqual(await rawExchange(socket, 'hello world\n'), { received: '', closed: true });
    assert.deepEqual(await rawExchange(socket, randomBytes(512)), { received: '', closed: true });
    assert.deepEqual(await rawExchange(socket, 'set=1\nfoo\n\nset=1\nlisten_port=x\n\n'), {
      received: 'errno=-71\n\nerrno=-22\n\n',
      closed: false,
    });
    const both = await rawExchange(socket, 'set=1\npublic_key=zz\n\nget=1\n\n');
    assert.ok(both.received.startsWith('errno=-22\n\nprivate_key='));
    assert.ok(both.received.endsWith('allowed_ip=10.0.0.0/24\nerrno=0\n\n'));

    const huge = `set=1\npublic_key=${Buffer.from(peer.bytes).toString('hex')}\n${'allowed_ip=10.1.0.0/16\n'.repeat(10_000)}\n`;
    assert.deepEqual(await rawExchange(socket, huge, 2_000), { received: '', closed: true });
    assert.deepEqual(await rawExchange(socket, `set=1\n${'x'.repeat(100_000)}`, 2_000), {
      received: '',
      closed: true,
    });

    // The connection limit: four idle clients fill it, a fifth is turned away, then wg works again.
    const idle = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<ReturnType<typeof connect>>((resolve) => {
            const c = connect({ path: socket }, () => resolve(c));
            c.on('error', () => undefined);
          }),
      ),
    );
    try {
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(iface.server.connections, 4);
      assert.deepEqual(await rawExchange(socket, 'get=1\n\n', 1_000), { received: '', closed: true });
    } finally {
      for (const c of idle) c.destroy();
    }
    await new Promise((r) => setTimeout(r, 50));

    assert.deepEqual(iface.device.peerStatus(peer, 0)!.allowedIps, ['10.0.0.0/24'], 'nothing applied');
    assert.equal(await wg('show', iface.name, 'allowed-ips'), `${b64(peer)}\t10.0.0.0/24\n`);
  });
});

describe('UAPI socket mechanics', () => {
  let dir = '';
  const local: UapiServer[] = [];
  const handler = (): UapiHandler =>
    new UapiHandler(new Device(), { getListenPort: () => 0, setListenPort: () => undefined });

  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'weft-uapi-sock-'));
  });

  after(async () => {
    await Promise.allSettled(local.map((s) => s.close()));
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  async function listen(name: string, sub = 'run/wireguard'): Promise<UapiServer> {
    const server = await UapiServer.listen(name, handler(), { dir: path.join(dir, sub) });
    local.push(server);
    return server;
  }

  it('creates the directory 0755 and the socket 0600, and removes the socket on close', async () => {
    const server = await listen('wg0');
    const dirMode = (await fsp.stat(path.join(dir, 'run/wireguard'))).mode & 0o777;
    assert.equal(dirMode & ~0o755, 0, `directory mode ${dirMode.toString(8)}`);
    const st = await fsp.lstat(server.path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(server.path, path.join(dir, 'run/wireguard/wg0.sock'));
    assert.equal((await rawExchange(server.path, 'get=1\n\n')).received, 'errno=0\n\n');
    await server.close();
    await server.close();
    assert.equal(fs.existsSync(server.path), false);
  });

  it('refuses a live socket and replaces a stale one', async () => {
    const live = await listen('live0');
    await assert.rejects(listen('live0'), /in use.*already served/);
    assert.equal(
      (await rawExchange(live.path, 'get=1\n\n')).received,
      'errno=0\n\n',
      'the first still works',
    );

    // A stale socket: a hard link to a listening socket outlives the listener.
    const staleDir = path.join(dir, 'stale');
    await fsp.mkdir(staleDir);
    const stalePath = path.join(staleDir, 'old0.sock');
    const temp = createServer();
    await new Promise<void>((resolve) => temp.listen(path.join(staleDir, 'tmp.sock'), resolve));
    await fsp.link(path.join(staleDir, 'tmp.sock'), stalePath);
    await new Promise<void>((resolve) => temp.close(() => resolve()));
    assert.ok((await fsp.lstat(stalePath)).isSocket());
    const fresh = await listen('old0', 'stale');
    assert.equal((await rawExchange(fresh.path, 'get=1\n\n')).received, 'errno=0\n\n');
  });

  it('refuses to replace something that is not a socket, and bad names or paths', async () => {
    await fsp.mkdir(path.join(dir, 'files'));
    await fsp.writeFile(path.join(dir, 'files', 'file0.sock'), 'not a socket');
    await assert.rejects(listen('file0', 'files'), /exists and is not a socket/);
    assert.equal(await fsp.readFile(path.join(dir, 'files', 'file0.sock'), 'utf8'), 'not a socket');
    for (const bad of ['', 'a/b', '..', 'sixteen-chars-xx', 'with space']) {
      await assert.rejects(listen(bad), /bad interface name/, bad);
    }
    await assert.rejects(listen('wg0', 'x'.repeat(120)), /at most 107/);
  });
});
