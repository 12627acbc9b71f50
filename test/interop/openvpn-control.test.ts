/**
 * Weft's OpenVPN control channel (src/openvpn/: stateless handshake, ControlSession, node:tls) against the
 * real openvpn 2.6 client from Debian. The server (openvpn-control-server.ts) runs in one lab namespace over
 * a UDP socket; `openvpn --client --dev tun --proto udp` runs in another with certificates made here by the
 * openssl CLI (ECDSA P-256 CA, server and client certificates). For each case:
 *
 *   1. the client logs "Initialization Sequence Completed" and its tun carries the pushed IPv4 and IPv6
 *      addresses (`ip -n NS addr`);
 *   2. the data keys agree: the client pings the pushed gateway, and the P_DATA_V2 packets it sends open with
 *      node:crypto AES-256-GCM under the key block the server core handed out (OpenVPN's slicing, crypto.c:
 *      the client sends with key 0 of the key2 block — cipher key = its first 32 cipher bytes, implicit IV =
 *      its first 8 HMAC bytes; nonce = packet id ‖ implicit IV; AAD = opcode/peer id ‖ packet id);
 *   3. a renegotiation (client --reneg-sec, or started by the server) brings data keys for key id 1, which
 *      open the client's packets under that key id.
 *
 * Cases: tls-crypt-v2 with EKM (the default), tls-auth, and the TLS-1.0-PRF path (the server does not offer
 * EKM) over tls-crypt.
 */
import assert from 'node:assert/strict';
import { createDecipheriv } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { PushDescription } from '../../src/openvpn/control-session.js';
import { TlsCryptV2ServerKey } from '../../src/openvpn/tls-crypt-v2.js';
import { makePki, type Pki } from '../unit/openvpn-control-pki.js';
import { interopSkip, JsonLinesProcess, Lab, run, type Netns } from './harness.js';
import type { ServerConfig } from './openvpn-control-server.js';

const SERVER = fileURLToPath(new URL('./openvpn-control-server.js', import.meta.url));
const TOOLS = ['ip', 'openvpn', 'openssl', 'ping'];
const SERVER_ADDR = '10.92.0.1';
const CLIENT_ADDR = '10.92.0.2';
const PORT = 1194;
const GATEWAY = '10.8.0.1';

const PUSH: PushDescription = {
  topology: 'subnet',
  ifconfig: { address: '10.8.0.2', netmask: '255.255.255.0' },
  ifconfigIpv6: { address: 'fd00:8::2', prefixLength: 64, gateway: 'fd00:8::1' },
  routeGateway: GATEWAY,
  ping: 10,
  pingRestart: 60,
};

type ServerEvent =
  | { ev: 'ready' }
  | { ev: 'error'; message: string }
  | { ev: 'data-keys'; keyId: number; cipher: string; derivation: string; peerId: number; keyBlock: string }
  | { ev: 'data'; keyId: number; hex: string }
  | { ev: 'ended'; reason: string }
  | {
      ev:
        | 'authenticated'
        | 'peer-info'
        | 'push-sent'
        | 'key-retired'
        | 'established'
        | 'reset-answered'
        | 'drop'
        | 'handshake-drop';
    };

/** Opens a client→server P_DATA_V2 AES-256-GCM packet with the key2 block; undefined when it does not open. */
function openClientPacket(packet: Buffer, keyBlock: Buffer, keyIndex: 0 | 1 = 0): Buffer | undefined {
  if (packet.length < 4 + 4 + 16) return undefined;
  const base = keyIndex * 128;
  const key = keyBlock.subarray(base, base + 32);
  const implicitIv = keyBlock.subarray(base + 64, base + 72);
  const packetId = packet.subarray(4, 8);
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.concat([packetId, implicitIv]));
  decipher.setAAD(packet.subarray(0, 8));
  decipher.setAuthTag(packet.subarray(8, 24));
  try {
    return Buffer.concat([decipher.update(packet.subarray(24)), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** An IPv4 ICMP echo request to `dst`. */
function isEchoTo(ip: Buffer, dst: string): boolean {
  return (
    ip.length >= 28 && ip[0] === 0x45 && ip[9] === 1 && ip.subarray(16, 20).join('.') === dst && ip[20] === 8
  );
}

describe('OpenVPN control channel against openvpn 2.6', { skip: interopSkip(TOOLS) }, () => {
  let lab: Lab;
  let server: Netns;
  let client: Netns;
  let pki: Pki;

  before(async () => {
    lab = await Lab.create('ovpc', { tools: TOOLS });
    server = await lab.netns('s');
    client = await lab.netns('c');
    await lab.veth(server, client, { aAddr: `${SERVER_ADDR}/24`, bAddr: `${CLIENT_ADDR}/24` });
    pki = makePki(path.dirname(lab.file('pki')));
  });

  after(async () => {
    await lab?.cleanup();
  });

  interface Case {
    name: string;
    wrap: ServerConfig['wrap'];
    clientArgs: string[];
    offerEkm: boolean;
    expectDerivation: 'tls-ekm' | 'openvpn-prf';
    renegotiateAfterMs?: number;
  }

  async function runCase(c: Case): Promise<void> {
    const config: ServerConfig = {
      address: SERVER_ADDR,
      port: PORT,
      wrap: c.wrap,
      cert: pki.files.serverCert,
      key: pki.files.serverKey,
      ca: pki.files.ca,
      offerEkm: c.offerEkm,
      push: PUSH,
      ...(c.renegotiateAfterMs === undefined ? {} : { renegotiateAfterMs: c.renegotiateAfterMs }),
    };
    const configFile = lab.file(`server-${c.name}.json`);
    await fsp.writeFile(configFile, JSON.stringify(config));
    const weft = new JsonLinesProcess<ServerEvent>(server.spawn(process.execPath, [SERVER, configFile]));
    await weft.next('ready');
    const openvpn = client.spawn('openvpn', [
      '--client',
      '--dev',
      'tun',
      '--proto',
      'udp',
      '--remote',
      SERVER_ADDR,
      String(PORT),
      '--nobind',
      '--ca',
      pki.files.ca,
      '--cert',
      pki.files.clientCert,
      '--key',
      pki.files.clientKey,
      '--remote-cert-tls',
      'server',
      '--verb',
      '3',
      ...c.clientArgs,
    ]);
    try {
      await openvpn.waitForOutput(/Initialization Sequence Completed/, 30_000);
      const keys0 = (await weft.waitFor(
        'data keys for key id 0',
        (e) => e.ev === 'data-keys' && e.keyId === 0,
      )) as Extract<ServerEvent, { ev: 'data-keys' }>;
      assert.equal(keys0.derivation, c.expectDerivation);
      assert.equal(keys0.cipher, 'AES-256-GCM');
      assert.match(
        openvpn.stdout + openvpn.stderr,
        /PUSH: Received control message: 'PUSH_REPLY,.*cipher AES-256-GCM/,
      );

      // The pushed addresses are on the client's tun.
      const addr = (await client.exec('ip', ['addr'])).stdout;
      assert.match(addr, /inet 10\.8\.0\.2\/24 /, addr);
      assert.match(addr, /inet6 fd00:8::2\/64 /, addr);

      await expectKeysOpenTraffic(weft, 0, Buffer.from(keys0.keyBlock, 'hex'));

      if (c.renegotiateAfterMs !== undefined || c.clientArgs.includes('--reneg-sec')) {
        const keys1 = (await weft.waitFor(
          'data keys for key id 1',
          (e) => e.ev === 'data-keys' && e.keyId === 1,
          40_000,
        )) as Extract<ServerEvent, { ev: 'data-keys' }>;
        assert.equal(keys1.derivation, c.expectDerivation);
        assert.notEqual(keys1.keyBlock, keys0.keyBlock);
        await expectKeysOpenTraffic(weft, 1, Buffer.from(keys1.keyBlock, 'hex'));
      }
      assert.ok(!weft.events().some((e) => e.ev === 'ended'), 'the session did not end');
    } finally {
      await openvpn.stop();
      await weft.process.stop();
    }
  }

  /** Pings the gateway through the tunnel until a packet under `keyId` opens to that echo request (bounded). */
  async function expectKeysOpenTraffic(
    weft: JsonLinesProcess<ServerEvent>,
    keyId: number,
    block: Buffer,
  ): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      await client.exec('ping', ['-c', '2', '-i', '0.2', '-W', '1', GATEWAY], { allowFail: true });
      const packets = weft
        .events()
        .filter((e): e is Extract<ServerEvent, { ev: 'data' }> => e.ev === 'data' && e.keyId === keyId)
        .map((e) => Buffer.from(e.hex, 'hex'));
      const opened = packets
        .map((p) => openClientPacket(p, block))
        .filter((p): p is Buffer => p !== undefined);
      if (opened.some((ip) => isEchoTo(ip, GATEWAY))) {
        // The other half of the block (the server's sending key) does not open them: the check can fail.
        assert.ok(packets.every((p) => openClientPacket(p, block, 1) === undefined));
        return;
      }
      if (Date.now() > deadline)
        assert.fail(
          `no packet under key id ${keyId} opened to an echo request (${packets.length} seen, ${opened.length} opened)`,
        );
    }
  }

  it('tls-crypt-v2 (client key made by openvpn from our server key), EKM, client renegotiation (--reneg-sec 10)', async () => {
    const serverKey = TlsCryptV2ServerKey.generate();
    const serverKeyFile = lab.file('v2-server.key');
    await fsp.writeFile(serverKeyFile, serverKey.toPem(), { mode: 0o600 });
    const clientKeyFile = lab.file('v2-client.key');
    await run('openvpn', ['--tls-crypt-v2', serverKeyFile, '--genkey', 'tls-crypt-v2-client', clientKeyFile]);
    await runCase({
      name: 'v2',
      wrap: { kind: 'tls-crypt-v2', serverKeyFile },
      clientArgs: ['--tls-crypt-v2', clientKeyFile, '--reneg-sec', '10'],
      offerEkm: true,
      expectDerivation: 'tls-ekm',
    });
  });

  it('tls-auth (key direction 1 on the client, SHA1), EKM', async () => {
    const keyFile = lab.file('ta.key');
    await run('openvpn', ['--genkey', 'tls-auth', keyFile]);
    await runCase({
      name: 'tls-auth',
      wrap: { kind: 'tls-auth', keyFile, direction: 0, digest: 'sha1' },
      clientArgs: ['--tls-auth', keyFile, '1'],
      offerEkm: true,
      expectDerivation: 'tls-ekm',
    });
  });

  it('the TLS-1.0-PRF path (server does not offer EKM) over tls-crypt, server-started renegotiation', async () => {
    const keyFile = lab.file('tc.key');
    await run('openvpn', ['--genkey', 'tls-crypt', keyFile]);
    await runCase({
      name: 'prf',
      wrap: { kind: 'tls-crypt', keyFile },
      clientArgs: ['--tls-crypt', keyFile],
      offerEkm: false,
      expectDerivation: 'openvpn-prf',
      renegotiateAfterMs: 8_000,
    });
  });
});
