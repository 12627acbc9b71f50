/**
 * Weft's IKEv2 core against strongSwan 5.9 with certificates (RFC 7427 signature authentication): charon in
 * one namespace (its own mount namespace, as in ipsec-ike.test.ts), test/interop/ike-host.ts in another.
 * Certificates come from `openssl` (test/support/ike-pki.ts): ECDSA P-256 and RSA-2048 from a root CA, and
 * ECDSA P-256 through an intermediate CA that each side sends in a second CERT payload. Each side initiates:
 * the IKE SA and the CHILD SA come up with the same SPIs on both sides. A certificate from a CA the other side
 * does not trust is refused in both directions, with AUTHENTICATION_FAILED and a message saying why.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { TrafficSelector } from '../../src/ipsec/child-sa.js';
import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { selectorFromPrefix } from '../../src/ipsec/traffic-selectors.js';
import { TestPki, type KeyKind, type TestCert } from '../support/ike-pki.js';
import type { IkeHostConfig } from './ike-host.js';
import { interopSkip, JsonLinesProcess, Lab, waitFor, type Netns } from './harness.js';
import { Charon, startCharon as startStrongSwan, STRONGSWAN_TOOLS, swanctlConf } from './strongswan.js';

const IKE_HOST = fileURLToPath(new URL('./ike-host.js', import.meta.url));
const TOOLS = [...STRONGSWAN_TOOLS, 'openssl'];

const SW_ADDR = '10.81.0.1';
const WEFT_ADDR = '10.81.0.2';
const SW_NET = '10.13.0.0/24';
const WEFT_NET = '10.14.0.0/24';
const IKE = 'aes256gcm16-prfsha256-ecp256';
const ESP = 'aes256gcm16';

interface HostEvent {
  ev: string;
  failure?: string;
  message?: string;
  spiI?: string;
  spiR?: string;
  peerId?: string;
  spec?: { inboundSpi: string; outboundSpi: string };
}

function ts(prefix: string): TrafficSelector {
  const s = selectorFromPrefix(prefix);
  assert.ok(s);
  return s;
}

/** Who holds what in one scenario. */
interface Material {
  /** strongSwan's certificate, key, and intermediates it holds (and so sends). */
  sw: TestCert;
  swIntermediates: TestCert[];
  /** The CAs strongSwan trusts. */
  swTrusts: TestCert[];
  weft: TestCert;
  weftChain: TestCert[];
  weftTrusts: TestCert[];
}

describe(
  'IKEv2 certificates: Weft core ↔ strongSwan 5.9 (ECDSA, RSA, intermediate CA)',
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
      pki = TestPki.create('weft-ike-certs-');
      certs.root = pki.root('root');
      certs.rsaRoot = pki.root('rsa-root', 'rsa');
      certs.stranger = pki.root('stranger');
      certs.inter = pki.intermediate('inter', certs.root);
      const leaf = (name: string, issuer: TestCert, kind: KeyKind, dns: string) =>
        pki.leaf(name, issuer, { kind, sans: [`DNS:${dns}`] });
      certs.sw = leaf('sw', certs.root, 'ecdsa', 'sw.example');
      certs.weft = leaf('weft', certs.root, 'ecdsa', 'weft.example');
      certs.swRsa = leaf('sw-rsa', certs.rsaRoot, 'rsa', 'sw.example');
      certs.weftRsa = leaf('weft-rsa', certs.rsaRoot, 'rsa', 'weft.example');
      certs.swInter = leaf('sw-inter', certs.inter, 'ecdsa', 'sw.example');
      certs.weftInter = leaf('weft-inter', certs.inter, 'ecdsa', 'weft.example');
      certs.swStranger = leaf('sw-stranger', certs.stranger, 'ecdsa', 'sw.example');
      certs.weftStranger = leaf('weft-stranger', certs.stranger, 'ecdsa', 'weft.example');

      lab = await Lab.create('ikec', { tools: TOOLS });
      sw = await lab.netns('sw');
      wf = await lab.netns('wf');
      await lab.veth(sw, wf, { aAddr: `${SW_ADDR}/24`, bAddr: `${WEFT_ADDR}/24` });
      // "error installing route" otherwise: charon wants an address inside its local subnet.
      await sw.exec('ip', ['addr', 'add', '10.13.0.1/24', 'dev', 'lo']);
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

    async function startCharon(m: Material, swInitiates: boolean): Promise<Charon> {
      const swanctl = swanctlConf([
        {
          name: 'weft',
          localAddrs: SW_ADDR,
          remoteAddrs: WEFT_ADDR,
          proposals: IKE,
          localId: 'sw.example',
          remoteId: 'weft.example',
          psk: { cert: 'sw.crt' },
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
      const charon = await startStrongSwan(lab, sw, {
        swanctl,
        files: [
          { path: 'x509/sw.crt', data: m.sw.cert },
          { path: 'private/sw.key', data: m.sw.key, mode: 0o600 },
          // Intermediates strongSwan holds go with the trusted roots: it builds its own chain from them and
          // sends them.
          ...[...m.swTrusts, ...m.swIntermediates].map((ca) => ({
            path: `x509ca/${ca.name}.crt`,
            data: ca.cert,
          })),
        ],
      });
      tempDirs.push(charon.dir);
      running.charon = charon;
      return charon;
    }

    async function startHost(m: Material): Promise<JsonLinesProcess<HostEvent>> {
      const site: IkePeerConfig = {
        localId: { type: 'fqdn', value: 'weft.example' },
        remoteId: { type: 'fqdn', value: 'sw.example' },
        certificate: {
          certificate: m.weft.cert,
          privateKey: m.weft.key,
          chain: m.weftChain.map((c) => c.cert),
          trusted: m.weftTrusts.map((c) => c.cert),
        },
        ikeProposals: [IKE],
        espProposals: [ESP],
        localSelectors: [ts(WEFT_NET)],
        remoteSelectors: [ts(SW_NET)],
        mode: 'tunnel',
      };
      const config: IkeHostConfig = { address: WEFT_ADDR, peer: SW_ADDR, site };
      const host = new JsonLinesProcess<HostEvent>(
        wf.spawn(process.execPath, [IKE_HOST, JSON.stringify(config)]),
      );
      running.host = host;
      const ready = await host.waitFor('ready', (e) => e.ev === 'ready' || e.ev === 'error');
      assert.equal(ready.ev, 'ready', JSON.stringify(ready));
      return host;
    }

    async function bringUp(
      m: Material,
      swInitiates: boolean,
    ): Promise<{ host: JsonLinesProcess<HostEvent>; charon: Charon }> {
      await stopAll();
      const host = await startHost(m);
      const charon = await startCharon(m, swInitiates);
      const loaded = await charon.swanctl(['--load-all']);
      assert.match(loaded, /loaded certificate from '\/etc\/swanctl\/x509\/sw\.crt'/, loaded);
      assert.match(loaded, /loaded connection 'weft'/, loaded);
      if (!swInitiates) host.command({ op: 'initiate' });
      return { host, charon };
    }

    async function checkEstablished(m: Material, swInitiates: boolean, label: string): Promise<string> {
      const { host, charon } = await bringUp(m, swInitiates);
      const { ike, child } = await charon.expectSameSas(host);
      assert.equal(ike.peerId, 'fqdn:sw.example');
      const log = await charon.logText();
      // charon authenticated us by signature (RFC 7427) with our certificate.
      assert.match(
        log,
        /authentication of 'weft\.example' with (RSA_EMSA_PKCS1_SHA2_256|ECDSA_WITH_SHA256_DER|RSA|ECDSA)[^\n]*successful/,
      );
      assert.match(log, /received end entity cert "CN=weft[^"]*"/);
      process.stdout.write(
        `# ${label}, ${swInitiates ? 'strongSwan' : 'Weft'} initiating: IKE ${ike.spiI}_i ${ike.spiR}_r, CHILD in ${child.spec!.inboundSpi} out ${child.spec!.outboundSpi}\n`,
      );
      return log;
    }

    const ecdsa = (): Material => ({
      sw: certs.sw!,
      swIntermediates: [],
      swTrusts: [certs.root!],
      weft: certs.weft!,
      weftChain: [],
      weftTrusts: [certs.root!],
    });
    const rsa = (): Material => ({
      sw: certs.swRsa!,
      swIntermediates: [],
      swTrusts: [certs.rsaRoot!],
      weft: certs.weftRsa!,
      weftChain: [],
      weftTrusts: [certs.rsaRoot!],
    });
    const viaIntermediate = (): Material => ({
      sw: certs.swInter!,
      swIntermediates: [certs.inter!],
      swTrusts: [certs.root!],
      weft: certs.weftInter!,
      weftChain: [certs.inter!],
      weftTrusts: [certs.root!],
    });

    for (const swInitiates of [true, false]) {
      const who = swInitiates ? 'strongSwan' : 'Weft';
      it(`ECDSA P-256, ${who} initiates: ESTABLISHED and INSTALLED with the same SPIs`, async () => {
        const log = await checkEstablished(ecdsa(), swInitiates, 'ECDSA P-256');
        assert.match(log, /authentication of 'weft\.example' with ECDSA_WITH_SHA256_DER successful/);
      });
      it(`RSA-2048, ${who} initiates: ESTABLISHED and INSTALLED with the same SPIs`, async () => {
        const log = await checkEstablished(rsa(), swInitiates, 'RSA-2048');
        assert.match(log, /authentication of 'weft\.example' with RSA_EMSA_PKCS1_SHA2_256 successful/);
      });
      it(`ECDSA P-256 through an intermediate CA on both sides, ${who} initiates: up`, async () => {
        const log = await checkEstablished(viaIntermediate(), swInitiates, 'intermediate CA');
        // We sent the intermediate; strongSwan sent its own, which the core took from the second CERT payload.
        assert.match(log, /received issuer cert "CN=inter, O=Weft Test"/);
        assert.match(log, /sending end entity cert "CN=sw-inter"/);
        assert.match(log, /sending issuer cert "CN=inter, O=Weft Test"/);
      });
    }

    it('an untrusted certificate from strongSwan (initiating): the core refuses it, strongSwan is told', async () => {
      const m = { ...ecdsa(), sw: certs.swStranger!, swTrusts: [certs.root!, certs.stranger!] };
      const { host, charon } = await bringUp(m, true);
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.ev, 'failed');
      assert.equal(f.failure, 'authentication-failed');
      assert.match(
        f.message!,
        /peer fqdn:sw\.example: untrusted issuer: CN=sw-stranger was issued by CN=stranger, O=Weft Test, which is not a trusted CA of this site/,
      );
      await waitFor(
        'charon to log AUTHENTICATION_FAILED',
        async () => /received AUTHENTICATION_FAILED notify error/.test(await charon.logText()),
        { timeoutMs: 10_000 },
      );
    });

    it('an untrusted certificate from strongSwan (Weft initiating): the core refuses it and deletes the SA', async () => {
      const m = { ...ecdsa(), sw: certs.swStranger!, swTrusts: [certs.root!, certs.stranger!] };
      const { host, charon } = await bringUp(m, false);
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.ev, 'failed');
      assert.match(
        f.message!,
        /peer fqdn:sw\.example: untrusted issuer: CN=sw-stranger was issued by CN=stranger/,
      );
      await waitFor(
        'charon to drop the IKE SA',
        async () => !/ESTABLISHED/.test(await charon.swanctl(['--list-sas'])),
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      assert.match(
        await charon.logText(),
        /AUTHENTICATION_FAILED|deleting IKE_SA|received DELETE for IKE_SA/,
      );
    });

    for (const swInitiates of [true, false]) {
      it(`our certificate from a CA strongSwan does not trust (${swInitiates ? 'strongSwan' : 'Weft'} initiating): strongSwan refuses it, the core says so`, async () => {
        const m = { ...ecdsa(), weft: certs.weftStranger! };
        const { host, charon } = await bringUp(m, swInitiates);
        await waitFor(
          'charon to refuse our certificate',
          async () => /no trusted ECDSA public key found for 'weft\.example'/.test(await charon.logText()),
          { timeoutMs: 20_000, intervalMs: 200 },
        );
        if (!swInitiates) {
          assert.equal(host.events().filter((e) => e.ev === 'child-sa-up').length, 0);
          const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed', 10_000);
          assert.equal(f.failure, 'authentication-failed');
          assert.match(
            f.message!,
            /refused our authentication \(AUTHENTICATION_FAILED\): it does not accept our certificate/,
          );
        } else {
          // As responder we answered IKE_AUTH (and were up) before strongSwan checked our AUTH (RFC 7296 §2.21.2);
          // its INFORMATIONAL AUTHENTICATION_FAILED takes the SAs down again.
          const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed', 10_000);
          assert.equal(f.failure, 'authentication-failed');
          assert.match(
            f.message!,
            /refused our authentication after IKE_AUTH \(INFORMATIONAL AUTHENTICATION_FAILED\)/,
          );
          assert.ok(host.events().some((e) => e.ev === 'ike-sa-down'));
          assert.ok(host.events().some((e) => e.ev === 'child-sa-down'));
        }
      });
    }
  },
);
