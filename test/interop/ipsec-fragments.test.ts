/**
 * IKE fragmentation (RFC 7383) against strongSwan 5.9 on a path that cannot carry a big IKE message: the veth
 * between the two namespaces has MTU 576, and nftables in both drops every UDP datagram over 576 bytes on the
 * way out (so the kernel cannot rescue a big message with IP fragments). IKE_AUTH carries RSA certificates
 * through an intermediate CA (root and intermediate RSA-4096, leaves RSA-3072), several kilobytes. With
 * fragmentation turned off on our side the exchange dies; with it on (charon.fragment_size = 576, the site's
 * fragmentSize 576) the IKE and CHILD SAs come up with the same SPIs, Weft initiating and strongSwan
 * initiating, every datagram we sent fits in 576 bytes, and charon logs the fragments it put back together.
 * With the default fragment size (1280) the first IKE_AUTH and its two retransmissions are lost on the path;
 * the third is cut to 576 bytes (RFC 7383 §2.5.2) and the SAs come up.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { TrafficSelector } from '../../src/ipsec/child-sa.js';
import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { selectorFromPrefix } from '../../src/ipsec/traffic-selectors.js';
import { TestPki, type TestCert } from '../support/ike-pki.js';
import type { IkeHostConfig } from './ike-host.js';
import { interopSkip, JsonLinesProcess, Lab, type Netns } from './harness.js';
import { Charon, startCharon, STRONGSWAN_TOOLS, swanctlConf } from './strongswan.js';

const IKE_HOST = fileURLToPath(new URL('./ike-host.js', import.meta.url));
const TOOLS = [...STRONGSWAN_TOOLS, 'openssl', 'nft'];

const SW_ADDR = '10.83.0.1';
const WEFT_ADDR = '10.83.0.2';
const SW_NET = '10.17.0.0/24';
const WEFT_NET = '10.18.0.0/24';
const IKE = 'aes256gcm16-prfsha256-ecp256';
const ESP = 'aes256gcm16';
const MTU = 576;

interface HostEvent {
  ev: string;
  failure?: string;
  message?: string;
  spiI?: string;
  spiR?: string;
  length?: number;
  spec?: { inboundSpi: string; outboundSpi: string };
  fragments?: { sent: number; received: number; reassembled: number; discarded: number; shrunk: number };
}

function ts(prefix: string): TrafficSelector {
  const s = selectorFromPrefix(prefix);
  assert.ok(s);
  return s;
}

describe(
  'IKE fragmentation: Weft core ↔ strongSwan 5.9 over a 576-byte path',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab;
    let sw: Netns;
    let wf: Netns;
    let pki: TestPki;
    const certs: Record<string, TestCert> = {};
    const running: { charon?: Charon; host?: JsonLinesProcess<HostEvent> } = {};
    const tempDirs: string[] = [];

    before(async () => {
      pki = TestPki.create('weft-ike-frag-');
      certs.root = pki.root('big-root', 'rsa4096');
      certs.inter = pki.intermediate('big-inter', certs.root, 'rsa4096');
      certs.sw = pki.leaf('sw-big', certs.inter, { kind: 'rsa3072', sans: ['DNS:sw.example'] });
      certs.weft = pki.leaf('weft-big', certs.inter, { kind: 'rsa3072', sans: ['DNS:weft.example'] });

      lab = await Lab.create('ikef', { tools: TOOLS });
      sw = await lab.netns('sw');
      wf = await lab.netns('wf');
      await lab.veth(sw, wf, { aAddr: `${SW_ADDR}/24`, bAddr: `${WEFT_ADDR}/24`, mtu: MTU });
      await sw.exec('ip', ['addr', 'add', '10.17.0.1/24', 'dev', 'lo']);
      // Outgoing UDP over the MTU is dropped before the kernel could cut it into IP fragments.
      for (const ns of [sw, wf]) {
        await ns.exec('nft', ['add table ip weftfrag']);
        await ns.exec('nft', ['add chain ip weftfrag out { type filter hook output priority 0 ; }']);
        await ns.exec('nft', [`add rule ip weftfrag out meta l4proto udp ip length > ${MTU} counter drop`]);
      }
    });

    after(async () => {
      await stopAll();
      await lab?.cleanup();
      for (const d of tempDirs) await fsp.rm(d, { recursive: true, force: true });
      pki?.cleanup();
    });

    async function stopAll(): Promise<void> {
      if (running.host) {
        running.host.command({ op: 'exit' });
        await running.host.process.stop(2_000).catch(() => undefined);
        running.host = undefined;
      }
      if (running.charon) {
        await running.charon.stop();
        running.charon = undefined;
      }
    }

    /** Packets the nft rule dropped in `ns`. */
    async function dropped(ns: Netns): Promise<number> {
      const r = await ns.exec('nft', ['list', 'table', 'ip', 'weftfrag']);
      const m = /counter packets (\d+)/.exec(r.stdout);
      return m ? Number(m[1]) : -1;
    }

    async function bringUp(
      swInitiates: boolean,
      site: Partial<IkePeerConfig>,
    ): Promise<{ host: JsonLinesProcess<HostEvent>; charon: Charon }> {
      await stopAll();
      const config: IkeHostConfig = {
        address: WEFT_ADDR,
        peer: SW_ADDR,
        site: {
          localId: { type: 'fqdn', value: 'weft.example' },
          remoteId: { type: 'fqdn', value: 'sw.example' },
          certificate: {
            certificate: certs.weft!.cert,
            privateKey: certs.weft!.key,
            chain: [certs.inter!.cert],
            trusted: [certs.root!.cert],
          },
          ikeProposals: [IKE],
          espProposals: [ESP],
          localSelectors: [ts(WEFT_NET)],
          remoteSelectors: [ts(SW_NET)],
          mode: 'tunnel',
          ...site,
        },
      };
      const host = new JsonLinesProcess<HostEvent>(
        wf.spawn(process.execPath, [IKE_HOST, JSON.stringify(config)]),
      );
      running.host = host;
      const ready = await host.waitFor('ready', (e) => e.ev === 'ready' || e.ev === 'error');
      assert.equal(ready.ev, 'ready', JSON.stringify(ready));
      const swanctl = swanctlConf([
        {
          name: 'weft',
          localAddrs: SW_ADDR,
          remoteAddrs: WEFT_ADDR,
          proposals: IKE,
          localId: 'sw.example',
          remoteId: 'weft.example',
          psk: { cert: 'sw.crt' },
          fragmentation: 'yes',
          children: [
            {
              name: 'net',
              localTs: SW_NET,
              remoteTs: WEFT_NET,
              esp: ESP,
              startAction: swInitiates ? 'start' : 'none',
            },
          ],
        },
      ]);
      const charon = await startCharon(lab, sw, {
        swanctl,
        charon: [`fragment_size = ${MTU}`],
        files: [
          { path: 'x509/sw.crt', data: certs.sw!.cert },
          { path: 'private/sw.key', data: certs.sw!.key, mode: 0o600 },
          { path: 'x509ca/big-root.crt', data: certs.root!.cert },
          { path: 'x509ca/big-inter.crt', data: certs.inter!.cert },
        ],
      });
      tempDirs.push(charon.dir);
      running.charon = charon;
      const loaded = await charon.swanctl(['--load-all']);
      assert.match(loaded, /loaded connection 'weft'/, loaded);
      if (!swInitiates) host.command({ op: 'initiate' });
      return { host, charon };
    }

    it('control: with fragmentation off on our side, IKE_AUTH is too big for the path and never arrives', async () => {
      const before = await dropped(wf);
      const { host, charon } = await bringUp(false, {
        fragmentation: false,
        retransmitTimeoutMs: 1_000,
        retransmitTries: 1,
      });
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.ev, 'failed');
      assert.equal(f.failure, 'peer-unreachable');
      const big = host.events().filter((e) => e.ev === 'send' && (e.length ?? 0) > MTU - 28);
      assert.ok(big.length >= 2, 'IKE_AUTH and its retransmission went whole');
      const lost = (await dropped(wf)) - before;
      assert.ok(lost >= 2, `nft dropped ${lost}`);
      process.stdout.write(
        `# unfragmented: IKE_AUTH of ${big[0]!.length} bytes sent ${big.length} times, ${lost} dropped on the path; ${f.message}\n`,
      );
    });

    it('the default 1280-byte fragments are lost on the path; after two retransmissions they are cut to 576', async () => {
      const before = await dropped(wf);
      const started = Date.now();
      const { host, charon } = await bringUp(false, { retransmitTimeoutMs: 1_000 });
      await charon.expectSameSas(host);
      const status = await host.request({ op: 'status' }, 'status');
      assert.equal(status.fragments!.shrunk, 1);
      const sends = host.events().filter((e) => e.ev === 'send');
      const big = sends.filter((e) => e.length! + 28 > MTU);
      assert.ok(big.length >= 3, `${big.length} datagrams over ${MTU} bytes`);
      const lost = (await dropped(wf)) - before;
      assert.equal(lost, big.length, 'the path dropped exactly the large ones');
      process.stdout.write(
        `# fallback: ${big.length} datagrams of up to ${Math.max(...big.map((e) => e.length!))} bytes lost, then ` +
          `cut to ${MTU}; SAs up after ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
      );
    });

    for (const swInitiates of [false, true]) {
      const who = swInitiates ? 'strongSwan' : 'Weft';
      it(`${who} initiates: IKE_AUTH in fragments of at most ${MTU} bytes, both SAs up with the same SPIs`, async () => {
        const { host, charon } = await bringUp(swInitiates, { fragmentSize: MTU });
        const { ike, child } = await charon.expectSameSas(host);
        const status = await host.request({ op: 'status' }, 'status');
        const frag = status.fragments!;
        assert.ok(frag.sent >= 4, `we sent ${frag.sent} fragments`);
        assert.ok(frag.received >= 4, `we received ${frag.received} fragments`);
        assert.equal(frag.reassembled, 1);
        const sends = host.events().filter((e) => e.ev === 'send');
        // The datagram (marker included) plus IP and UDP headers fits the path.
        for (const s of sends) assert.ok(s.length! + 28 <= MTU, `sent ${s.length} bytes`);
        const log = await charon.logText();
        const reassembled =
          /received fragment #(\d+) of (\d+), reassembled fragmented IKE message \((\d+) bytes\)/.exec(log);
        assert.ok(reassembled, 'charon put our fragments back together');
        const split = /splitting IKE message \((\d+) bytes\) into (\d+) fragments/.exec(log);
        assert.ok(split, 'charon fragmented its own IKE_AUTH');
        assert.match(log, /received end entity cert "CN=weft-big"/);
        assert.match(log, /authentication of 'weft\.example' with RSA_EMSA_PKCS1_SHA2_256 successful/);
        process.stdout.write(
          `# ${who} initiating: we sent ${frag.sent} fragments (largest datagram ${Math.max(...sends.map((s) => s.length!))} bytes), ` +
            `received ${frag.received}; charon reassembled ${reassembled[2]} fragments into ${reassembled[3]} bytes and split ` +
            `its ${split[1]}-byte message into ${split[2]}; IKE ${ike.spiI}_i ${ike.spiR}_r, CHILD in ${child.spec!.inboundSpi}\n`,
        );
      });
    }
  },
);
