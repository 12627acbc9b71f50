/**
 * Weft's IKEv2 core against strongSwan 5.9 (charon-systemd + swanctl, kernel-libipsec): charon runs in one
 * namespace, in a mount namespace of its own (tmpfs on /run, its own strongswan.conf and swanctl/ bound over
 * /etc, see shared/INTEROP-NOTES.md); test/interop/ike-host.ts runs the core over UDP 500/4500 in another.
 * PSK net-to-net with each side initiating and several suites: both sides ESTABLISHED/INSTALLED with the
 * same SPIs; a wrong PSK and a proposal mismatch fail with the promised messages; an IKEv1 initiation gets
 * no answer; strongSwan's liveness checks are answered, and ours are answered by it; CHILD and IKE SA rekeys
 * with PFS (swanctl --rekey and our rekey ops, both at once, and short lifetimes) end with the same SPIs in
 * swanctl --list-sas and in the core.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { selectorFromPrefix } from '../../src/ipsec/traffic-selectors.js';
import type { TrafficSelector } from '../../src/ipsec/child-sa.js';
import type { IkeHostConfig } from './ike-host.js';
import { interopSkip, JsonLinesProcess, Lab, waitFor, type Netns } from './harness.js';
import { Charon, startCharon as startStrongSwan, STRONGSWAN_TOOLS, swanctlConf } from './strongswan.js';

const IKE_HOST = fileURLToPath(new URL('./ike-host.js', import.meta.url));
const TOOLS = STRONGSWAN_TOOLS;

const SW_ADDR = '10.80.0.1';
const WEFT_ADDR = '10.80.0.2';
const SW_NET = '10.11.0.0/24';
const WEFT_NET = '10.12.0.0/24';
const PSK = 'interop-psk-0123456789-abcdef';

interface HostEvent {
  ev: string;
  inboundSpi?: string;
  rekeyOf?: { inboundSpi?: string; outboundSpi?: string; spiI?: string; spiR?: string };
  reason?: string;
  failure?: string;
  message?: string;
  spiI?: string;
  spiR?: string;
  proposal?: string;
  localPort?: number;
  spec?: {
    inboundSpi: string;
    outboundSpi: string;
    encryption: number;
    encryptionKeyBits: number;
    mode: string;
  };
  drops?: Record<string, number>;
  received?: number;
  processed?: number;
}

function ts(prefix: string): TrafficSelector {
  const s = selectorFromPrefix(prefix);
  assert.ok(s);
  return s;
}

interface Scenario {
  ike: string;
  esp: string;
  /** strongSwan's proposals, when they differ from ours. */
  swIke?: string;
  swEsp?: string;
  swPsk?: string;
  swInitiates: boolean;
  version?: 1 | 2;
  dpdDelay?: string;
  /** strongSwan's rekey_time for the IKE SA and the CHILD SA ("0" by default: the test triggers rekeys). */
  swIkeRekey?: string;
  swChildRekey?: string;
}

describe(
  'IKEv2: Weft core ↔ strongSwan 5.9 (charon-systemd, kernel-libipsec), PSK net-to-net',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab;
    let sw: Netns;
    let wf: Netns;
    const running: { charon?: Charon; host?: JsonLinesProcess<HostEvent> } = {};
    const tempDirs: string[] = [];

    before(async () => {
      lab = await Lab.create('ike', { tools: TOOLS });
      sw = await lab.netns('sw');
      wf = await lab.netns('wf');
      await lab.veth(sw, wf, { aAddr: `${SW_ADDR}/24`, bAddr: `${WEFT_ADDR}/24` });
      // "error installing route" otherwise: charon wants an address inside its local subnet.
      await sw.exec('ip', ['addr', 'add', '10.11.0.1/24', 'dev', 'lo']);
    });

    after(async () => {
      await stopAll();
      await lab?.cleanup();
      for (const d of tempDirs) await fsp.rm(d, { recursive: true, force: true });
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

    async function startCharon(s: Scenario): Promise<Charon> {
      const charon = await startStrongSwan(lab, sw, {
        swanctl: swanctlConf([
          {
            name: 'weft',
            ...(s.version ? { version: s.version } : {}),
            localAddrs: SW_ADDR,
            remoteAddrs: WEFT_ADDR,
            proposals: s.swIke ?? s.ike,
            ...(s.dpdDelay ? { dpdDelay: s.dpdDelay } : {}),
            ...(s.swIkeRekey ? { rekeyTime: s.swIkeRekey } : {}),
            localId: 'sw.example',
            remoteId: 'weft.example',
            psk: s.swPsk ?? PSK,
            children: [
              {
                name: 'net',
                localTs: SW_NET,
                remoteTs: WEFT_NET,
                esp: s.swEsp ?? s.esp,
                startAction: s.swInitiates ? 'start' : 'none',
                ...(s.swChildRekey ? { rekeyTime: s.swChildRekey } : {}),
              },
            ],
          },
        ]),
      });
      tempDirs.push(charon.dir);
      running.charon = charon;
      return charon;
    }

    async function startHost(
      s: Scenario,
      over: Partial<IkePeerConfig> = {},
    ): Promise<JsonLinesProcess<HostEvent>> {
      const site: IkePeerConfig = {
        localId: { type: 'fqdn', value: 'weft.example' },
        remoteId: { type: 'fqdn', value: 'sw.example' },
        psk: PSK,
        ikeProposals: [s.ike],
        espProposals: [s.esp],
        localSelectors: [ts(WEFT_NET)],
        remoteSelectors: [ts(SW_NET)],
        mode: 'tunnel',
        ...over,
      };
      const config: IkeHostConfig = { address: WEFT_ADDR, peer: SW_ADDR, site };
      const host = new JsonLinesProcess<HostEvent>(
        wf.spawn(process.execPath, [IKE_HOST, JSON.stringify(config)]),
      );
      running.host = host;
      await host.waitFor('ready', (e) => e.ev === 'ready');
      return host;
    }

    /** Brings the pair up with the side the scenario names initiating; returns the host. */
    async function bringUp(
      s: Scenario,
      over: Partial<IkePeerConfig> = {},
    ): Promise<{ host: JsonLinesProcess<HostEvent>; charon: Charon }> {
      await stopAll();
      const host = await startHost(s, over);
      const charon = await startCharon(s);
      await charon.swanctl(['--load-all']);
      if (!s.swInitiates) host.command({ op: 'initiate' });
      return { host, charon };
    }

    async function checkEstablished(s: Scenario): Promise<void> {
      const { host, charon } = await bringUp(s);
      const { ike, child, sas } = await charon.expectSameSas(host);
      assert.match(sas, new RegExp(`local +${SW_NET.replace(/\./g, '\\.')}`));
      assert.match(sas, new RegExp(`remote +${WEFT_NET.replace(/\./g, '\\.')}`));
      // kernel-libipsec forces UDP encapsulation: IKE_AUTH and everything after it went over 4500.
      assert.match(sas, /TUNNEL-in-UDP/);
      process.stdout.write(
        `# ${s.swInitiates ? 'strongSwan' : 'Weft'} initiating, ${s.ike} / esp ${s.esp}: IKE ${ike.spiI}_i ${ike.spiR}_r, CHILD in ${child.spec!.inboundSpi} out ${child.spec!.outboundSpi}\n`,
      );
    }

    const suites: [string, string][] = [
      ['aes256gcm16-prfsha256-x25519', 'aes256gcm16'],
      ['aes128-sha256-modp2048', 'aes128-sha256'],
      ['chacha20poly1305-prfsha512-ecp384', 'chacha20poly1305'],
    ];
    for (const swInitiates of [true, false]) {
      for (const [ike, esp] of suites) {
        it(`${swInitiates ? 'strongSwan' : 'Weft'} initiates ${ike} / esp ${esp}: ESTABLISHED and INSTALLED with the same SPIs on both sides`, async () => {
          await checkEstablished({ ike, esp, swInitiates });
        });
      }
    }

    it('a wrong PSK, Weft initiating: strongSwan answers AUTHENTICATION_FAILED and the core says so', async () => {
      const { host, charon } = await bringUp({
        ike: suites[0]![0],
        esp: suites[0]![1],
        swInitiates: false,
        swPsk: 'some-other-psk-0123456789',
      });
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.ev, 'failed');
      assert.equal(f.failure, 'authentication-failed');
      assert.match(f.message!, /refused our authentication \(AUTHENTICATION_FAILED\)/);
    });

    it('a wrong PSK, strongSwan initiating: the core refuses with AUTHENTICATION_FAILED and says why', async () => {
      const { host, charon } = await bringUp({
        ike: suites[0]![0],
        esp: suites[0]![1],
        swInitiates: true,
        swPsk: 'some-other-psk-0123456789',
      });
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.failure, 'authentication-failed');
      assert.match(f.message!, /AUTH from peer fqdn:sw\.example does not verify with our pre-shared key/);
      await waitFor(
        'charon to log AUTHENTICATION_FAILED',
        async () => /AUTHENTICATION_FAILED/.test(await charon.logText()),
        { timeoutMs: 10_000 },
      );
    });

    it('no common IKE proposal, strongSwan initiating: NO_PROPOSAL_CHOSEN naming both sides proposals', async () => {
      const { host, charon } = await bringUp({
        ike: 'aes256gcm16-prfsha256-x25519',
        swIke: 'aes128-sha1-modp2048',
        esp: 'aes256gcm16',
        swInitiates: true,
      });
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.failure, 'no-proposal-chosen');
      assert.match(
        f.message!,
        /peer offered \[aes128-sha1-prfsha1-modp2048\]; we accept \[aes256gcm16-prfsha256-x25519\]/,
      );
      await waitFor(
        'charon to log NO_PROPOSAL_CHOSEN',
        async () => /NO_PROPOSAL_CHOSEN/.test(await charon.logText()),
        { timeoutMs: 10_000 },
      );
    });

    it('no common IKE proposal, Weft initiating: NO_PROPOSAL_CHOSEN from strongSwan, our proposals named', async () => {
      const { host, charon } = await bringUp({
        ike: 'aes256gcm16-prfsha256-x25519',
        swIke: 'aes128-sha1-modp2048',
        esp: 'aes256gcm16',
        swInitiates: false,
      });
      const f = await charon.expect(host, 'failed', (e) => e.ev === 'failed' || e.ev === 'ike-sa-up', 20_000);
      assert.equal(f.failure, 'no-proposal-chosen');
      assert.match(
        f.message!,
        /answered NO_PROPOSAL_CHOSEN: none of our IKE proposals \[aes256gcm16-prfsha256-x25519\]/,
      );
    });

    it('an IKEv1 initiation (strongSwan version = 1) gets no answer', async () => {
      const { host, charon } = await bringUp({
        ike: 'aes128-sha256-modp2048',
        esp: 'aes128-sha256',
        swInitiates: true,
        version: 1,
      });
      await charon.expect(
        host,
        'ikev1 drop',
        (e) => e.ev === 'drop' && e.reason === 'ikev1-not-supported',
        20_000,
      );
      await delay(2_000);
      const events = host.events();
      assert.equal(events.filter((e) => e.ev === 'send').length, 0);
      assert.ok(events.filter((e) => e.ev === 'drop').every((e) => e.reason === 'ikev1-not-supported'));
      assert.match(await charon.logText(), /initiating Main Mode/);
    });

    it("DPD: strongSwan's liveness checks are answered and the SA stays up", async () => {
      const s: Scenario = { ike: suites[0]![0], esp: suites[0]![1], swInitiates: true, dpdDelay: '1s' };
      const { host, charon } = await bringUp(s);
      await charon.expect(host, 'child-sa-up', (e) => e.ev === 'child-sa-up', 20_000);
      const sendsBefore = host.events().filter((e) => e.ev === 'send').length;
      // charon sends a liveness check after dpd_delay without inbound traffic.
      await waitFor(
        'three liveness checks answered',
        () => host.events().filter((e) => e.ev === 'send').length >= sendsBefore + 3,
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      const out = await charon.swanctl(['--list-sas']);
      assert.match(out, /ESTABLISHED/);
      assert.match(await charon.logText(), /sending DPD request/);
      assert.equal(host.events().filter((e) => e.ev === 'ike-sa-down').length, 0);
    });

    it('DPD: our liveness checks (every 1 s) are answered by strongSwan and the SA stays up', async () => {
      const s: Scenario = { ike: suites[1]![0], esp: suites[1]![1], swInitiates: false };
      const { host, charon } = await bringUp(s, { dpdIntervalMs: 1_000 });
      await charon.expect(host, 'child-sa-up', (e) => e.ev === 'child-sa-up', 20_000);
      const status = async () => {
        const st = await host.request({ op: 'status' }, 'status');
        return st.processed ?? 0;
      };
      const before = await status();
      await delay(3_500);
      const after = await status();
      // Each answered check is one processed response; none retransmitted, none dropped as unknown.
      assert.ok(after >= before + 2, `answers processed: ${before} -> ${after}`);
      assert.equal(host.events().filter((e) => e.ev === 'ike-sa-down' || e.ev === 'failed').length, 0);
      assert.match(await charon.swanctl(['--list-sas']), /ESTABLISHED/);
    });

    /** The CHILD SAs the core has up now (inbound SPI -> event), from its events. */
    function liveChildren(host: JsonLinesProcess<HostEvent>): HostEvent[] {
      const live = new Map<string, HostEvent>();
      for (const e of host.events()) {
        if (e.ev === 'child-sa-up' && e.spec) live.set(e.spec.inboundSpi, e);
        else if (e.ev === 'child-sa-down' && e.inboundSpi) live.delete(e.inboundSpi);
      }
      return [...live.values()];
    }

    function liveIke(host: JsonLinesProcess<HostEvent>): string[] {
      const live = new Set<string>();
      for (const e of host.events()) {
        if (e.ev === 'ike-sa-up') live.add(`${e.spiI}_i ${e.spiR}_r`);
        else if (e.ev === 'ike-sa-down') live.delete(`${e.spiI}_i ${e.spiR}_r`);
      }
      return [...live];
    }

    /** Waits until swanctl and the core agree on exactly one IKE SA and one CHILD SA; returns what they show. */
    async function agree(charon: Charon, host: JsonLinesProcess<HostEvent>, what: string): Promise<string> {
      let last = '';
      try {
        return await waitFor(
          what,
          async () => {
            last = await charon.swanctl(['--list-sas']);
            const children = liveChildren(host);
            const ikes = liveIke(host);
            if (children.length !== 1 || ikes.length !== 1) return null;
            // charon lists rekeyed CHILD SAs as DELETED for a few seconds more: only INSTALLED ones count.
            const installed = last
              .split(/\n(?=\s+net: #)/)
              .filter((b) => /\bINSTALLED\b/.test(b))
              .join('\n');
            const ins = [...installed.matchAll(/\bin +([0-9a-f]{8})/g)].map((m) => m[1]);
            const outs = [...installed.matchAll(/\bout +([0-9a-f]{8})/g)].map((m) => m[1]);
            const ikeSpis = [...last.matchAll(/([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r/g)].map(
              (m) => `${m[1]}_i ${m[2]}_r`,
            );
            const spec = children[0]!.spec!;
            const ok =
              ins.length === 1 &&
              outs.length === 1 &&
              ins[0] === spec.outboundSpi &&
              outs[0] === spec.inboundSpi &&
              ikeSpis.length === 1 &&
              ikeSpis[0] === ikes[0];
            return ok ? last : null;
          },
          { timeoutMs: 20_000, intervalMs: 250 },
        );
      } catch (error) {
        throw new Error(
          `${(error as Error).message}\n--- swanctl --list-sas ---\n${last}\n--- core: ${JSON.stringify(liveChildren(host).map((e) => e.spec))} ${liveIke(host).join(', ')}\n--- charon log (tail) ---\n${(await charon.logText()).split('\n').slice(-40).join('\n')}`,
          { cause: error },
        );
      }
    }

    it('rekeys with PFS (x25519): CHILD and IKE SA, strongSwan and Weft initiating, then both at once', async () => {
      const s: Scenario = { ike: suites[0]![0], esp: 'aes256gcm16-x25519', swInitiates: true };
      const { host, charon } = await bringUp(s, { ikeRekeyMs: 0, childRekeyMs: 0 });
      await charon.expect(host, 'child-sa-up', (e) => e.ev === 'child-sa-up', 20_000);
      await agree(charon, host, 'the first SAs');
      const count = (ev: string, pred: (e: HostEvent) => boolean = () => true) =>
        host.events().filter((e) => e.ev === ev && pred(e)).length;
      const steps: [string, () => Promise<void>, 'child' | 'ike'][] = [
        [
          'strongSwan rekeys the CHILD SA',
          async () => void (await charon.swanctl(['--rekey', '--child', 'net'])),
          'child',
        ],
        ['Weft rekeys the CHILD SA', async () => host.command({ op: 'rekey-child' }), 'child'],
        [
          'strongSwan rekeys the IKE SA',
          async () => void (await charon.swanctl(['--rekey', '--ike', 'weft'])),
          'ike',
        ],
        ['Weft rekeys the IKE SA', async () => host.command({ op: 'rekey-ike' }), 'ike'],
      ];
      for (const [name, act, kind] of steps) {
        const ev = kind === 'child' ? 'child-sa-up' : 'ike-sa-up';
        const before = count(ev, (e) => e.rekeyOf !== undefined);
        const shown = liveChildren(host)[0]!.spec!;
        const ike = liveIke(host)[0]!;
        await act();
        await waitFor(
          `${name}: ${ev} with rekeyOf`,
          () => count(ev, (e) => e.rekeyOf !== undefined) > before,
          {
            timeoutMs: 20_000,
            intervalMs: 100,
          },
        );
        const sas = await agree(charon, host, `${name}: swanctl shows the new SAs`);
        const now = liveChildren(host)[0]!.spec!;
        if (kind === 'child') assert.notEqual(now.inboundSpi, shown.inboundSpi);
        else {
          assert.notEqual(liveIke(host)[0], ike);
          assert.equal(now.inboundSpi, shown.inboundSpi, 'CHILD SAs move to the new IKE SA unchanged');
        }
        process.stdout.write(
          `# ${name}: IKE ${liveIke(host)[0]}, CHILD in ${now.inboundSpi} out ${now.outboundSpi}\n`,
        );
        assert.match(sas, /ESTABLISHED/);
      }
      assert.ok(
        host
          .events()
          .filter((e) => e.ev === 'child-sa-down' || e.ev === 'ike-sa-down')
          .every((e) => e.reason === 'rekeyed'),
        JSON.stringify(host.events().filter((e) => e.ev.endsWith('-down'))),
      );
      // Both at once: the collision (if the two requests cross) must leave exactly one CHILD SA on each side.
      const upsBefore = count('child-sa-up');
      host.command({ op: 'rekey-child' });
      await charon.swanctl(['--rekey', '--child', 'net']);
      await waitFor('the simultaneous rekeys to settle', () => count('child-sa-up') >= upsBefore + 1, {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      await delay(3_000);
      await agree(charon, host, 'one CHILD SA after simultaneous rekeys');
      const crossed = count('child-sa-up') - upsBefore === 2;
      process.stdout.write(
        `# simultaneous CHILD rekey: ${crossed ? 'the requests crossed (collision resolved)' : 'no collision happened (one rekey finished first)'}\n`,
      );
      assert.equal(count('failed'), 0, JSON.stringify(host.events().filter((e) => e.ev === 'failed')));
    });

    it('short lifetimes (strongSwan rekey_time 6 s IKE / 4 s CHILD, Weft 7 s / 5 s): repeated rekeys keep one SA of each, agreed with swanctl', async () => {
      const s: Scenario = {
        ike: suites[0]![0],
        esp: 'aes256gcm16-x25519',
        swInitiates: false,
        swIkeRekey: '6s',
        swChildRekey: '4s',
      };
      const { host, charon } = await bringUp(s, { ikeRekeyMs: 7_000, childRekeyMs: 5_000 });
      await charon.expect(host, 'child-sa-up', (e) => e.ev === 'child-sa-up', 20_000);
      await delay(16_000);
      await agree(charon, host, 'one SA of each after 16 s of lifetimes');
      const childRekeys = host.events().filter((e) => e.ev === 'child-sa-up' && e.rekeyOf).length;
      const ikeRekeys = host.events().filter((e) => e.ev === 'ike-sa-up' && e.rekeyOf).length;
      process.stdout.write(`# 16 s: ${childRekeys} CHILD rekeys, ${ikeRekeys} IKE rekeys\n`);
      assert.ok(childRekeys >= 2, `${childRekeys} CHILD rekeys`);
      assert.ok(ikeRekeys >= 1, `${ikeRekeys} IKE rekeys`);
      assert.equal(host.events().filter((e) => e.ev === 'failed').length, 0);
    });
  },
);
