/**
 * Weft's CA and member profiles against the real openvpn 2.6 from Debian, as root, in two lab namespaces:
 *
 *   1. `weft server init` and `weft member add alice` (the CLI, in a store in the lab directory);
 *   2. an openvpn SERVER configured only from Weft's library: openVpnServerCredentials (CA, server
 *      certificate and key, tls-crypt-v2 server key) and openVpnCrl (--crl-verify), with --dh none,
 *      --topology subnet and --server;
 *   3. an openvpn CLIENT started with exactly the `.ovpn` that `weft member config alice --openvpn` printed
 *      (the endpoint is the server's lab address, so nothing is rewritten): "Initialization Sequence
 *      Completed", and a ping crosses the tunnel; then the same over the profile's TCP 443 remote (the
 *      client told `--proto-force tcp-client`, the server on TCP);
 *   4. `weft member rotate alice`, the server restarted with the new CRL: the old profile is refused (the
 *      server logs the certificate as revoked, the client never completes), and the new profile connects;
 *   5. the server asking memberForClientKeyMetadata about each client key (`--tls-crypt-v2-verify`, on the
 *      first packet, before any TLS): a revoked key and a disabled member's key are refused, the current key
 *      of an enabled member connects.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openVpnCrl, openVpnServerCredentials } from '../../src/control/pki.js';
import { openSqliteStore } from '../../src/control/store-sqlite.js';
import { interopSkip, Lab, run, type ManagedProcess, type Netns } from './harness.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const VERIFY = fileURLToPath(new URL('./tls-crypt-v2-verify.js', import.meta.url));
const TOOLS = ['ip', 'openvpn', 'openssl', 'ping'];
const SERVER_ADDR = '10.92.0.1';
const CLIENT_ADDR = '10.92.0.2';
/** The tunnel network openvpn's --server hands out; the server takes .1. */
const TUNNEL_NET = '10.93.0.0';
const TUNNEL_SERVER = '10.93.0.1';
const CONNECTED = /Initialization Sequence Completed/;

describe('Weft OpenVPN profiles against openvpn 2.6', { skip: interopSkip(TOOLS) }, () => {
  let lab: Lab;
  let serverNs: Netns;
  let clientNs: Netns;
  let dataDir: string;

  async function weft(...args: string[]): Promise<string> {
    const r = await run(process.execPath, [CLI, ...args, '-d', dataDir], { timeoutMs: 30_000 });
    return r.stdout;
  }

  before(async () => {
    lab = await Lab.create('openvpn-profile', { tools: TOOLS });
    serverNs = await lab.netns('s');
    clientNs = await lab.netns('c');
    await lab.veth(serverNs, clientNs, { aAddr: `${SERVER_ADDR}/24`, bAddr: `${CLIENT_ADDR}/24` });
    dataDir = join(lab.dir, 'weft');
    mkdirSync(dataDir, { mode: 0o700 });
    await weft('server', 'init', '--endpoint', `${SERVER_ADDR}:51820`, '--subnet', '10.94.0.0/24');
    await weft('member', 'add', 'alice');
  });

  after(async () => {
    await lab?.cleanup();
  });

  /**
   * Starts an openvpn server from what Weft's library gives (read from the store now, CRL included), on UDP
   * 1194 or TCP 443 as the profile's remotes say.
   */
  async function startServer(
    proto: 'udp' | 'tcp' = 'udp',
    { verifyClientKeys = false }: { verifyClientKeys?: boolean } = {},
  ): Promise<ManagedProcess> {
    const store = openSqliteStore(join(dataDir, 'weft.db'));
    let files: { ca: string; cert: string; key: string; tlsCrypt: string; crl: string };
    try {
      const creds = openVpnServerCredentials(store);
      files = {
        ca: await lab.writeSecret('ca.pem', creds.ca),
        cert: await lab.writeSecret('server.pem', creds.certificate),
        key: await lab.writeSecret('server.key', creds.privateKey),
        tlsCrypt: await lab.writeSecret('tls-crypt-v2-server.key', creds.tlsCryptV2ServerKey.toPem()),
        crl: await lab.writeSecret('crl.pem', await openVpnCrl(store)),
      };
    } finally {
      store.close();
    }
    const server = serverNs.spawn('openvpn', [
      '--server',
      TUNNEL_NET,
      '255.255.255.0',
      '--topology',
      'subnet',
      '--dev',
      'tun',
      '--proto',
      proto === 'udp' ? 'udp' : 'tcp-server',
      '--local',
      SERVER_ADDR,
      '--port',
      proto === 'udp' ? '1194' : '443',
      '--dh',
      'none',
      '--ca',
      files.ca,
      '--cert',
      files.cert,
      '--key',
      files.key,
      '--tls-crypt-v2',
      files.tlsCrypt,
      '--crl-verify',
      files.crl,
      '--data-ciphers',
      'AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305',
      '--keepalive',
      '2',
      '10',
      '--verb',
      '3',
      ...(verifyClientKeys
        ? [
            '--script-security',
            '2',
            '--tls-crypt-v2-verify',
            `${process.execPath} ${VERIFY} ${join(dataDir, 'weft.db')}`,
          ]
        : []),
    ]);
    await server.waitForOutput(CONNECTED, 15_000);
    return server;
  }

  /**
   * Starts a client with the profile as printed, written 0600 into the lab directory. `--proto-force tcp-client`
   * makes openvpn skip the profile's UDP remote and use its TCP one, as a client behind a UDP-blocking
   * firewall ends up doing; the profile itself is not touched.
   */
  async function startClient(profile: string, name: string, tcp = false): Promise<ManagedProcess> {
    const file = await lab.writeSecret(`${name}.ovpn`, profile);
    return clientNs.spawn('openvpn', ['--config', file, ...(tcp ? ['--proto-force', 'tcp-client'] : [])]);
  }

  async function pingThroughTunnel(): Promise<void> {
    const r = await clientNs.exec('ping', ['-c', '3', '-i', '0.3', '-W', '2', TUNNEL_SERVER], {
      timeoutMs: 15_000,
      allowFail: true,
    });
    assert.equal(r.code, 0, `ping ${TUNNEL_SERVER} through the tunnel failed:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /3 received/);
  }

  it('connects with the printed profile (UDP, then TCP 443), refuses it after a rotation, and connects with the new one', async () => {
    const oldProfile = await weft('member', 'config', 'alice', '--openvpn');
    assert.match(oldProfile, new RegExp(`^remote ${SERVER_ADDR.replaceAll('.', '\\.')} 1194 udp$`, 'm'));

    let server = await startServer();
    const first = await startClient(oldProfile, 'old');
    try {
      await first.waitForOutput(CONNECTED, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nclient: ${first.describe()}\nserver: ${server.describe()}`);
    }
    await pingThroughTunnel();
    await first.stop();
    await server.stop();

    // The second remote, TCP 443, with the same profile.
    assert.match(
      oldProfile,
      new RegExp(`^remote ${SERVER_ADDR.replaceAll('.', '\\.')} 443 tcp-client$`, 'm'),
    );
    server = await startServer('tcp');
    const overTcp = await startClient(oldProfile, 'old-tcp', true);
    try {
      await overTcp.waitForOutput(CONNECTED, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nclient: ${overTcp.describe()}\nserver: ${server.describe()}`);
    }
    assert.match(overTcp.stdout, /TCP connection established|TCP_CLIENT link remote/);
    await pingThroughTunnel();
    await overTcp.stop();
    await server.stop();

    await weft('member', 'rotate', 'alice');
    const newProfile = await weft('member', 'config', 'alice', '--openvpn');
    assert.notEqual(newProfile, oldProfile);

    server = await startServer();
    const refused = await startClient(oldProfile, 'old-again');
    await server.waitForOutput(/certificate revoked/, 30_000);
    assert.doesNotMatch(refused.stdout, CONNECTED, 'the revoked profile must not connect');
    await refused.stop();

    const second = await startClient(newProfile, 'new');
    try {
      await second.waitForOutput(CONNECTED, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nclient: ${second.describe()}\nserver: ${server.describe()}`);
    }
    await pingThroughTunnel();
    await second.stop();
    await server.stop();
  });

  it('refuses a revoked client key and a disabled member before TLS (tls-crypt-v2 metadata)', async () => {
    const revoked = await weft('member', 'config', 'alice', '--openvpn');
    await weft('member', 'rotate', 'alice', '--only', 'openvpn');
    const current = await weft('member', 'config', 'alice', '--openvpn');
    const server = await startServer('udp', { verifyClientKeys: true });

    const old = await startClient(revoked, 'revoked-key');
    await server.waitForOutput(/weft-verify: refused \(revoked, member alice\)/, 30_000);
    assert.doesNotMatch(
      server.stdout,
      /VERIFY OK: depth=0/,
      'no TLS handshake got as far as the certificate',
    );
    await old.stop();

    const ok = await startClient(current, 'current-key');
    try {
      await ok.waitForOutput(CONNECTED, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nclient: ${ok.describe()}\nserver: ${server.describe()}`);
    }
    assert.match(server.stdout, /weft-verify: member alice admitted/);
    await pingThroughTunnel();
    await ok.stop();

    await weft('member', 'disable', 'alice');
    const disabled = await startClient(current, 'disabled');
    await server.waitForOutput(/weft-verify: refused \(disabled, member alice\)/, 30_000);
    assert.doesNotMatch(disabled.stdout, CONNECTED);
    await disabled.stop();

    await weft('member', 'enable', 'alice');
    const again = await startClient(current, 'enabled-again');
    await again.waitForOutput(CONNECTED, 30_000);
    await again.stop();
    await server.stop();
  });
});
