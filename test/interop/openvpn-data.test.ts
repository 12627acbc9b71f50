/**
 * The OpenVPN data channel (src/openvpn/data-channel*.ts) against a real openvpn 2.6 pair, for each data cipher
 * (AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305). A point-to-point TLS pair (self-signed certificates pinned with
 * --peer-fingerprint) runs in two namespaces; the client talks to a relay (openvpn-data-relay.ts) in the
 * server's namespace, which forwards to the server and reports every data datagram to this process.
 *
 * The key block: openvpn derives its data keys with the TLS exporter, label "EXPORTER-OpenVPN-datakeys",
 * 256 bytes, no context (ssl.c generate_key_expansion_tls_export, used when both ends are 2.6). openvpn does not
 * show them: `--keying-material-exporter` refuses that label, its output reaches only a plugin's TLS_FINAL
 * call anyway, and the key dump at --verb 7 prints the cipher keys without the implicit IVs. So the test
 * compiles a small shim, preloaded into both ends, that wraps OpenSSL's SSL_export_keying_material and appends
 * the output for that label to a file: exactly the bytes openvpn cut its keys from. Both ends must agree.
 *
 * Then, per cipher:
 *   (a) a ping through the client's tun: our server-role channel opens the client's P_DATA_V2 packets and finds
 *       the ICMP echo request inside;
 *   (b) our client-role channel seals an ICMP echo request to the server's tun address; injected through the
 *       relay, the real server accepts it and its kernel answers: the echo reply, sealed by openvpn, opens
 *       with our channel;
 *   (c) the same datagram injected again is a replay: our open() says 'replayed', openvpn logs "bad packet
 *       ID (may be a replay)" and no second reply comes.
 *
 * And once, with AES-256-GCM and the client renegotiating after a few seconds: the second key id gets its own
 * block (the same at both ends), the client's key-1 packets open, our echo request sealed under key id 1 is
 * answered under key id 1, key-0 packets held back still open with both keys installed, and not once key 0 is
 * retired. And the payload classes on real traffic: the client's --ping keepalives open as 'ping' and its
 * --mtu-test probes as 'occ' with their OCC opcodes. (OCC_EXIT is not seen here: two 2.6 peers agree on
 * IV_PROTO_CC_EXIT_NOTIFY and send the exit notification over the control channel instead; ssl_ncp.c, sig.c.)
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DATA_V2_HEADER, DataChannel, isDrop } from '../../src/openvpn/data-channel.js';
import { DATA_CIPHERS, type DataCipherName } from '../../src/openvpn/data-channel-keys.js';
import { OCC_MTU_LOAD_REQUEST, OCC_MTU_REPLY } from '../../src/openvpn/data-channel-payload.js';
import {
  interopSkip,
  JsonLinesProcess,
  Lab,
  run,
  waitFor,
  type ManagedProcess,
  type Netns,
} from './harness.js';

const RELAY = fileURLToPath(new URL('./openvpn-data-relay.js', import.meta.url));
const TOOLS = ['ip', 'openvpn', 'openssl', 'cc', 'ping'];
const SERVER_ADDR = '10.92.0.1';
const CLIENT_ADDR = '10.92.0.2';
const RELAY_PORT = 1194;
const SERVER_PORT = 1195;
const TUN_SERVER = '10.93.0.1';
const TUN_CLIENT = '10.93.0.2';
const START_TIMEOUT_MS = 20_000;

type RelayEvent =
  | { ev: 'ready' }
  | { ev: 'sent' }
  | { ev: 'error'; message: string }
  | { ev: 'data'; n: number; from: 'client' | 'server'; hex: string };

/**
 * LD_PRELOAD shim: calls OpenSSL's SSL_export_keying_material and, for openvpn's data-key label, appends the
 * output (hex) to the file named by WEFT_EKM_FILE.
 */
const EKM_SHIM_SOURCE = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ssl_st SSL;
typedef int (*export_fn)(SSL *, unsigned char *, size_t, const char *, size_t, const unsigned char *, size_t, int);

int SSL_export_keying_material(SSL *s, unsigned char *out, size_t olen, const char *label, size_t llen,
                               const unsigned char *context, size_t contextlen, int use_context)
{
    static const char want[] = "EXPORTER-OpenVPN-datakeys";
    export_fn real = (export_fn)dlsym(RTLD_NEXT, "SSL_export_keying_material");
    int ret = real ? real(s, out, olen, label, llen, context, contextlen, use_context) : 0;
    const char *file = getenv("WEFT_EKM_FILE");
    if (ret == 1 && file && llen == sizeof want - 1 && memcmp(label, want, llen) == 0) {
        FILE *f = fopen(file, "a");
        if (f) {
            for (size_t i = 0; i < olen; i++) fprintf(f, "%02x", out[i]);
            fputc('\\n', f);
            fclose(f);
        }
    }
    return ret;
}
`;

// ---- IPv4 / ICMP, just enough for an echo request ----

function checksum(bytes: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

function icmpEcho(src: string, dst: string, id: number, seq: number): Uint8Array {
  const data = Buffer.from('weft openvpn data channel interop');
  const p = new Uint8Array(20 + 8 + data.length);
  const view = new DataView(p.buffer);
  p[0] = 0x45;
  view.setUint16(2, p.length);
  view.setUint16(4, 0x1234);
  p[8] = 64;
  p[9] = 1; // ICMP
  p.set(ipv4Bytes(src), 12);
  p.set(ipv4Bytes(dst), 16);
  view.setUint16(10, checksum(p, 0, 20));
  p[20] = 8; // echo request
  view.setUint16(24, id);
  view.setUint16(26, seq);
  p.set(data, 28);
  view.setUint16(22, checksum(p, 20, p.length));
  return p;
}

interface Icmp {
  src: string;
  dst: string;
  type: number;
  id: number;
  seq: number;
}

function parseIcmp(p: Uint8Array): Icmp | undefined {
  if (p.length < 28 || p[0]! >>> 4 !== 4 || p[9] !== 1) return undefined;
  const ihl = (p[0]! & 0x0f) * 4;
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    src: [...p.subarray(12, 16)].join('.'),
    dst: [...p.subarray(16, 20)].join('.'),
    type: p[ihl]!,
    id: view.getUint16(ihl + 4),
    seq: view.getUint16(ihl + 6),
  };
}

const bytesOf = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));

describe('OpenVPN data channel against openvpn 2.6', { skip: interopSkip(TOOLS) }, () => {
  let lab: Lab;
  let server: Netns;
  let client: Netns;
  let shim: string;
  let certs: {
    server: { cert: string; key: string; fp: string };
    client: { cert: string; key: string; fp: string };
  };

  async function makeCert(name: string): Promise<{ cert: string; key: string; fp: string }> {
    const cert = lab.file(`${name}.crt`);
    const key = lab.file(`${name}.key`);
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
      '-subj',
      `/CN=weft-ovpn-data-${name}`,
      '-days',
      '1',
    ]);
    return { cert, key, fp: new X509Certificate(await fsp.readFile(cert)).fingerprint256 };
  }

  before(async () => {
    lab = await Lab.create('ovpndata', { tools: TOOLS });
    server = await lab.netns('s');
    client = await lab.netns('c');
    await lab.veth(server, client, { aAddr: `${SERVER_ADDR}/24`, bAddr: `${CLIENT_ADDR}/24` });
    certs = { server: await makeCert('server'), client: await makeCert('client') };
    const source = lab.file('ekm-shim.c');
    await fsp.writeFile(source, EKM_SHIM_SOURCE);
    shim = lab.file('ekm-shim.so');
    await run('cc', ['-shared', '-fPIC', '-O1', '-o', shim, source, '-ldl'], { timeoutMs: 60_000 });
  });

  after(async () => {
    await lab?.cleanup();
  });

  /** Both ends of a pair negotiating `cipher`, through the relay, with the key-block shim preloaded. */
  async function startPair(cipher: DataCipherName, tag: string, clientArgs: readonly string[] = []) {
    const relay = new JsonLinesProcess<RelayEvent>(
      server.spawn(process.execPath, [
        RELAY,
        SERVER_ADDR,
        String(RELAY_PORT),
        SERVER_ADDR,
        String(SERVER_PORT),
      ]),
    );
    const processes: ManagedProcess[] = [relay.process];
    const stop = async (): Promise<void> => {
      await Promise.allSettled(processes.map((p) => p.stop()));
    };
    try {
      await relay.next('ready');
      const keys = { server: lab.file(`${tag}-server.ekm`), client: lab.file(`${tag}-client.ekm`) };
      const common = (ifname: string, own: 'server' | 'client', local: string, remote: string): string[] => [
        '--verb',
        '4',
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
        '--cert',
        certs[own].cert,
        '--key',
        certs[own].key,
        '--peer-fingerprint',
        certs[own === 'server' ? 'client' : 'server'].fp,
        '--dh',
        'none',
        '--data-ciphers',
        cipher,
      ];
      const env = (own: 'server' | 'client'): { env: Record<string, string> } => ({
        env: { LD_PRELOAD: shim, WEFT_EKM_FILE: keys[own] },
      });
      const ovs = server.spawn(
        'openvpn',
        [
          ...common(lab.ifname(`${tag}s`), 'server', TUN_SERVER, TUN_CLIENT),
          '--tls-server',
          '--local',
          SERVER_ADDR,
          '--lport',
          String(SERVER_PORT),
        ],
        env('server'),
      );
      processes.push(ovs);
      await ovs.waitForOutput(/UDPv4 link local \(bound\)/, START_TIMEOUT_MS);
      const ovc = client.spawn(
        'openvpn',
        [
          ...common(lab.ifname(`${tag}c`), 'client', TUN_CLIENT, TUN_SERVER),
          '--tls-client',
          '--nobind',
          '--remote',
          SERVER_ADDR,
          String(RELAY_PORT),
          ...clientArgs,
        ],
        env('client'),
      );
      processes.push(ovc);
      await ovc.waitForOutput(/Initialization Sequence Completed/, START_TIMEOUT_MS);
      await ovs.waitForOutput(/Initialization Sequence Completed/, START_TIMEOUT_MS);
      return { relay, server: ovs, client: ovc, keys, stop };
    } catch (error) {
      await stop();
      throw error;
    }
  }

  for (const [index, cipher] of DATA_CIPHERS.entries()) {
    it(`${cipher}: opens the real client's packets, seals packets the real server accepts, drops replays`, async () => {
      const pair = await startPair(cipher, `k${index}`);
      try {
        // Both ends negotiated this cipher and exported the same 256-byte block.
        const cipherLine = new RegExp(`Data Channel: cipher '${cipher}'`, 'i');
        await pair.client.waitForOutput(cipherLine, 5_000);
        const readBlock = async (file: string): Promise<string> =>
          waitFor(`key block in ${file}`, async () => {
            const text = await fsp.readFile(file, 'utf8').catch(() => '');
            return text.split('\n')[0]?.trim() ?? '';
          });
        const clientHex = await readBlock(pair.keys.client);
        assert.equal(clientHex.length, 512, 'a 256-byte block');
        assert.equal(await readBlock(pair.keys.server), clientHex, 'both ends exported the same block');
        const block = bytesOf(clientHex);

        const reports = new Map<number, Extract<RelayEvent, { ev: 'data' }>>();
        const data = (from: 'client' | 'server'): Extract<RelayEvent, { ev: 'data' }>[] => {
          for (const e of pair.relay.events()) if (e.ev === 'data') reports.set(e.n, e);
          return [...reports.values()].filter((e) => e.from === from).sort((a, b) => a.n - b.n);
        };

        // (a) A ping through the client's tun; the first P_DATA_V2 tells the peer id.
        await client.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', TUN_SERVER], { timeoutMs: 10_000 });
        const fromClient = await waitFor('client data packets', () =>
          data('client').length >= 3 ? data('client') : undefined,
        );
        const first = bytesOf(fromClient[0]!.hex);
        assert.equal(first[0]! >>> 3, 9, 'openvpn 2.6 sends P_DATA_V2');
        assert.equal(first[0]! & 7, 0, 'key id 0');
        const peerId = (first[1]! << 16) | (first[2]! << 8) | first[3]!;
        const observer = new DataChannel({ role: 'server', peerId });
        observer.installKey(0, block, cipher);
        const plain = new Uint8Array(2048);
        let echoes = 0;
        let highestClientId = 0;
        for (const report of fromClient) {
          const result = observer.open(bytesOf(report.hex), plain, Date.now());
          assert.ok(!isDrop(result), `client packet ${report.n} dropped: ${result}`);
          highestClientId = Math.max(highestClientId, observer.opened.packetId);
          const icmp = result === 'ip' ? parseIcmp(plain.subarray(0, observer.opened.length)) : undefined;
          if (icmp && icmp.type === 8 && icmp.src === TUN_CLIENT && icmp.dst === TUN_SERVER) echoes++;
        }
        assert.ok(echoes >= 3, `found ${echoes} ICMP echo requests in the client's packets`);
        // Our client-role channel opens what the real server sends back (the echo replies).
        const forger = new DataChannel({ role: 'client', peerId });
        forger.installKey(0, block, cipher);
        const replies: Icmp[] = [];
        const opened = new Set<number>();
        const repliesSeen = (): Icmp[] => {
          for (const report of data('server')) {
            if (opened.has(report.n)) continue;
            opened.add(report.n);
            const result = forger.open(bytesOf(report.hex), plain, Date.now());
            if (result === 'ip') {
              const icmp = parseIcmp(plain.subarray(0, forger.opened.length));
              if (icmp && icmp.type === 0) replies.push(icmp);
            }
          }
          return replies;
        };
        await waitFor('echo replies from the real server', () => repliesSeen().length >= 3 || undefined);

        // (b) Our sealed echo request, with the packet id after the client's last one, goes to the server.
        const id = 0x5746;
        const seq = 1 + index;
        const request = icmpEcho(TUN_CLIENT, TUN_SERVER, id, seq);
        forger.setSendPacketIdForTest(highestClientId);
        const wire = new Uint8Array(request.length + DATA_V2_HEADER);
        const n = forger.seal(request, wire);
        assert.equal(typeof n, 'number');
        const packet = wire.subarray(0, n as number);
        const ours = (): number => repliesSeen().filter((r) => r.id === id && r.seq === seq).length;
        await pair.relay.request(
          { cmd: 'inject', to: 'server', hex: Buffer.from(packet).toString('hex') },
          'sent',
        );
        await waitFor('the real server to answer our sealed echo request', () => ours() === 1 || undefined, {
          timeoutMs: 5_000,
        });
        assert.equal(
          observer.open(packet, plain, Date.now()),
          'ip',
          'our own server-role channel opens it too',
        );

        // (c) The same datagram again: a replay for us and for openvpn.
        assert.equal(observer.open(packet, plain, Date.now()), 'replayed');
        assert.equal(observer.drops.replayed, 1);
        await pair.relay.request(
          { cmd: 'inject', to: 'server', hex: Buffer.from(packet).toString('hex') },
          'sent',
        );
        await pair.server.waitForOutput(/bad packet ID \(may be a replay\)/, 5_000);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        assert.equal(ours(), 1, 'no second echo reply for the replayed datagram');
      } finally {
        await pair.stop();
      }
    });
  }

  it('renegotiation: the new key id has its own block; both key ids open, the newest seals', async () => {
    // The client renegotiates after 6 s (2.6 clients pick a time between 90% and 100% of --reneg-sec).
    const pair = await startPair('AES-256-GCM', 'rn', ['--reneg-sec', '6']);
    try {
      const blocks = async (file: string): Promise<string[]> =>
        (await fsp.readFile(file, 'utf8').catch(() => '')).split('\n').filter((l) => l.length === 512);
      const reports = new Map<number, Extract<RelayEvent, { ev: 'data' }>>();
      const data = (from: 'client' | 'server'): Extract<RelayEvent, { ev: 'data' }>[] => {
        for (const e of pair.relay.events()) if (e.ev === 'data') reports.set(e.n, e);
        return [...reports.values()].filter((e) => e.from === from).sort((a, b) => a.n - b.n);
      };
      // Key 0 traffic; keep its packets unopened for now (they arrive "late", during the transition).
      await client.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', TUN_SERVER], { timeoutMs: 10_000 });
      const early = await waitFor('key-0 packets', () =>
        data('client').length >= 2 ? data('client') : undefined,
      );
      await waitFor('a second key block', async () => (await blocks(pair.keys.client)).length >= 2, {
        timeoutMs: 20_000,
        intervalMs: 200,
      });
      const clientBlocks = await blocks(pair.keys.client);
      assert.deepEqual(
        await waitFor('server blocks', async () => {
          const b = await blocks(pair.keys.server);
          return b.length >= 2 ? b : undefined;
        }),
        clientBlocks,
        'both ends exported the same two blocks',
      );
      assert.notEqual(clientBlocks[0], clientBlocks[1]);

      // Traffic after the renegotiation uses key id 1.
      const before = data('client').length;
      await waitFor(
        'key-1 packets',
        async () => {
          await client.exec('ping', ['-c', '1', '-W', '1', TUN_SERVER], {
            allowFail: true,
            timeoutMs: 5_000,
          });
          return data('client')
            .slice(before)
            .some((r) => (bytesOf(r.hex)[0]! & 7) === 1);
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      const first = bytesOf(early[0]!.hex);
      const peerId = (first[1]! << 16) | (first[2]! << 8) | first[3]!;
      const observer = new DataChannel({ role: 'server', peerId });
      observer.installKey(0, bytesOf(clientBlocks[0]!), 'AES-256-GCM');
      observer.installKey(1, bytesOf(clientBlocks[1]!), 'AES-256-GCM');
      assert.equal(observer.sendKeyId, 1);
      const plain = new Uint8Array(2048);
      const later = data('client')
        .slice(before)
        .filter((r) => (bytesOf(r.hex)[0]! & 7) === 1);
      for (const r of later) {
        assert.equal(observer.open(bytesOf(r.hex), plain, Date.now()), 'ip');
        assert.equal(observer.opened.keyId, 1);
      }
      // The newest key seals: our echo request under key id 1 is answered by the real server under key id 1.
      const forger = new DataChannel({ role: 'client', peerId });
      forger.installKey(0, bytesOf(clientBlocks[0]!), 'AES-256-GCM');
      forger.installKey(1, bytesOf(clientBlocks[1]!), 'AES-256-GCM');
      forger.setSendPacketIdForTest(observer.opened.packetId);
      const request = icmpEcho(TUN_CLIENT, TUN_SERVER, 0x5747, 1);
      const wire = new Uint8Array(request.length + DATA_V2_HEADER);
      const n = forger.seal(request, wire);
      assert.equal(typeof n, 'number');
      assert.equal(wire[0]! & 7, 1, 'sealed with key id 1');
      const serverBefore = data('server').length;
      const packet = wire.subarray(0, n as number);
      await pair.relay.request(
        { cmd: 'inject', to: 'server', hex: Buffer.from(packet).toString('hex') },
        'sent',
      );
      await waitFor('the real server to answer under key id 1', () =>
        data('server')
          .slice(serverBefore)
          .some((r) => {
            if (forger.open(bytesOf(r.hex), plain, Date.now()) !== 'ip') return false;
            const icmp = parseIcmp(plain.subarray(0, forger.opened.length));
            return forger.opened.keyId === 1 && icmp?.type === 0 && icmp.id === 0x5747;
          }),
      );

      // The key-0 packets still open: the old key id is alive through the transition window.
      for (const r of early) {
        assert.equal(observer.open(bytesOf(r.hex), plain, Date.now()), 'ip');
        assert.equal(observer.opened.keyId, 0);
      }
      // Once retired, key id 0 is unknown.
      observer.retireKey(0);
      const replay0 = bytesOf(early[0]!.hex);
      assert.equal(observer.open(replay0, plain, Date.now()), 'unknown-key-id');
    } finally {
      await pair.stop();
    }
  });

  it("payload classes on real traffic: openvpn's keepalive ping and its OCC MTU probes", async () => {
    const pair = await startPair('CHACHA20-POLY1305', 'pc', ['--ping', '1', '--mtu-test']);
    try {
      const block = await waitFor('key block', async () => {
        const line = (await fsp.readFile(pair.keys.client, 'utf8').catch(() => '')).split('\n')[0] ?? '';
        return line.length === 512 ? bytesOf(line) : undefined;
      });
      const reports = new Map<number, Extract<RelayEvent, { ev: 'data' }>>();
      const fromClient = (): Extract<RelayEvent, { ev: 'data' }>[] => {
        for (const e of pair.relay.events()) if (e.ev === 'data') reports.set(e.n, e);
        return [...reports.values()].filter((e) => e.from === 'client').sort((a, b) => a.n - b.n);
      };
      let observer: DataChannel | undefined;
      const plain = new Uint8Array(2048);
      const opened = new Set<number>();
      const classes: string[] = [];
      const occ: number[] = [];
      const pump = (): void => {
        for (const r of fromClient()) {
          if (opened.has(r.n)) continue;
          opened.add(r.n);
          const bytes = bytesOf(r.hex);
          if (!observer) {
            observer = new DataChannel({
              role: 'server',
              peerId: (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!,
            });
            observer.installKey(0, block, 'CHACHA20-POLY1305');
          }
          const result = observer.open(bytes, plain, Date.now());
          classes.push(result);
          if (result === 'occ') occ.push(observer.opened.occOpcode);
        }
      };
      await waitFor('a keepalive ping from the client', () => (pump(), classes.includes('ping')), {
        timeoutMs: 10_000,
      });
      // --mtu-test probes the path with OCC messages on the data channel (occ.c: OCC_MTU_LOAD_REQUEST first).
      await waitFor('an OCC message from the client', () => (pump(), occ.length > 0), { timeoutMs: 10_000 });
      assert.ok(
        occ.every((op) => op >= OCC_MTU_LOAD_REQUEST && op <= OCC_MTU_REPLY),
        `OCC opcodes ${occ.join(', ')}`,
      );
      assert.ok(!classes.some((c) => c !== 'ping' && c !== 'occ' && c !== 'ip'), classes.join(', '));
    } finally {
      await pair.stop();
    }
  });
});
