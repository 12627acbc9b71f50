/**
 * Failures that must say why, against strongSwan 5.9 (the rest of the list is elsewhere: a wrong PSK and no
 * common IKE proposal in ipsec-ike.test.ts, an untrusted certificate both ways in ipsec-certs.test.ts):
 *
 *   - traffic selectors not acceptable: our remote subnet is not strongSwan's local one. strongSwan
 *     initiating, the core answers TS_UNACCEPTABLE with a line naming what the peer proposed and what we
 *     allow; Weft initiating, strongSwan answers TS_UNACCEPTABLE and the core's line names our selectors;
 *   - no common ESP proposal (the IKE SA is fine, the CHILD SA is not): strongSwan initiating, the core's
 *     line names both sides' ESP proposals; Weft initiating, NO_PROPOSAL_CHOSEN from strongSwan, ours named
 *     (and charon's log names both lists).
 * Each case also checks charon's log for its side of the story, and that no CHILD SA came up.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { IkePeerConfig } from '../../src/ipsec/config.js';
import { selectorFromPrefix } from '../../src/ipsec/traffic-selectors.js';
import type { IkeHostConfig } from './ike-host.js';
import { interopSkip, JsonLinesProcess, Lab, waitFor, type Netns } from './harness.js';
import { Charon, startCharon, STRONGSWAN_TOOLS, swanctlConf } from './strongswan.js';

const IKE_HOST = fileURLToPath(new URL('./ike-host.js', import.meta.url));

const SW_ADDR = '10.84.0.1';
const WEFT_ADDR = '10.84.0.2';
const SW_NET = '10.19.0.0/24';
const WEFT_NET = '10.20.0.0/24';
const ELSEWHERE = '10.99.0.0/24';
const PSK = 'interop-failures-psk-0123456789';
const IKE = 'aes256gcm16-prfsha256-x25519';

interface HostEvent {
  ev: string;
  failure?: string;
  message?: string;
}

function sel(prefix: string) {
  const s = selectorFromPrefix(prefix);
  assert.ok(s);
  return s;
}

describe(
  'IKEv2 failures that say why: Weft core ↔ strongSwan 5.9',
  { skip: interopSkip(STRONGSWAN_TOOLS) },
  () => {
    let lab: Lab;
    let sw: Netns;
    let wf: Netns;
    const running: { charon?: Charon; host?: JsonLinesProcess<HostEvent> } = {};
    const tempDirs: string[] = [];

    before(async () => {
      lab = await Lab.create('ikefail', { tools: STRONGSWAN_TOOLS });
      sw = await lab.netns('sw');
      wf = await lab.netns('wf');
      await lab.veth(sw, wf, { aAddr: `${SW_ADDR}/24`, bAddr: `${WEFT_ADDR}/24` });
      await sw.exec('ip', ['addr', 'add', '10.19.0.1/24', 'dev', 'lo']);
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

    async function bringUp(o: {
      swInitiates: boolean;
      esp: string;
      swEsp: string;
      ours: Partial<IkePeerConfig>;
    }): Promise<{ host: JsonLinesProcess<HostEvent>; charon: Charon }> {
      await stopAll();
      const site: IkePeerConfig = {
        localId: { type: 'fqdn', value: 'weft.example' },
        remoteId: { type: 'fqdn', value: 'sw.example' },
        psk: PSK,
        ikeProposals: [IKE],
        espProposals: [o.esp],
        localSelectors: [sel(WEFT_NET)],
        remoteSelectors: [sel(SW_NET)],
        mode: 'tunnel',
        ...o.ours,
      };
      const config: IkeHostConfig = { address: WEFT_ADDR, peer: SW_ADDR, site };
      const host = new JsonLinesProcess<HostEvent>(
        wf.spawn(process.execPath, [IKE_HOST, JSON.stringify(config)]),
      );
      running.host = host;
      await host.waitFor('ready', (e) => e.ev === 'ready');
      const charon = await startCharon(lab, sw, {
        swanctl: swanctlConf([
          {
            name: 'weft',
            localAddrs: SW_ADDR,
            remoteAddrs: WEFT_ADDR,
            proposals: IKE,
            localId: 'sw.example',
            remoteId: 'weft.example',
            psk: PSK,
            children: [
              {
                name: 'net',
                localTs: SW_NET,
                remoteTs: WEFT_NET,
                esp: o.swEsp,
                startAction: o.swInitiates ? 'start' : 'none',
              },
            ],
          },
        ]),
      });
      tempDirs.push(charon.dir);
      running.charon = charon;
      await charon.swanctl(['--load-all']);
      if (!o.swInitiates) host.command({ op: 'initiate' });
      return { host, charon };
    }

    async function failure(host: JsonLinesProcess<HostEvent>, charon: Charon): Promise<HostEvent> {
      const f = await charon.expect(
        host,
        'failed',
        (e) => e.ev === 'failed' || e.ev === 'child-sa-up',
        20_000,
      );
      assert.equal(f.ev, 'failed', JSON.stringify(f));
      assert.equal(host.events().filter((e) => e.ev === 'child-sa-up').length, 0);
      process.stdout.write(`# ${f.failure}: ${f.message}\n`);
      return f;
    }

    async function charonSays(charon: Charon, what: RegExp): Promise<void> {
      try {
        await waitFor(`charon to log ${what}`, async () => what.test(await charon.logText()), {
          timeoutMs: 10_000,
        });
      } catch (error) {
        throw new Error(
          `${(error as Error).message}\n--- charon log (tail) ---\n${await charon.logTail(30)}`,
          {
            cause: error,
          },
        );
      }
      const line = (await charon.logText()).split('\n').find((l) => what.test(l));
      process.stdout.write(`#   charon: ${line?.trim()}\n`);
    }

    it('TS_UNACCEPTABLE, strongSwan initiating: the core refuses and names both sides’ selectors', async () => {
      const { host, charon } = await bringUp({
        swInitiates: true,
        esp: 'aes256gcm16',
        swEsp: 'aes256gcm16',
        ours: { remoteSelectors: [sel(ELSEWHERE)] },
      });
      const f = await failure(host, charon);
      assert.equal(f.failure, 'ts-unacceptable');
      assert.match(
        f.message!,
        /traffic selectors from fqdn:sw\.example not acceptable: peer proposed TSi \[10\.19\.0\.0\.\.10\.19\.0\.255\] TSr \[10\.20\.0\.0\.\.10\.20\.0\.255\]; we allow remote \[10\.99\.0\.0\.\.10\.99\.0\.255\] local \[10\.20\.0\.0\.\.10\.20\.0\.255\]/,
      );
      await charonSays(charon, /received TS_UNACCEPTABLE notify/);
    });

    it('TS_UNACCEPTABLE, Weft initiating: strongSwan refuses, the core names the selectors it asked for', async () => {
      const { host, charon } = await bringUp({
        swInitiates: false,
        esp: 'aes256gcm16',
        swEsp: 'aes256gcm16',
        ours: { remoteSelectors: [sel(ELSEWHERE)] },
      });
      const f = await failure(host, charon);
      assert.equal(f.failure, 'ts-unacceptable');
      assert.match(
        f.message!,
        /peer fqdn:sw\.example answered TS_UNACCEPTABLE for TSi \[10\.20\.0\.0\.\.10\.20\.0\.255\] TSr \[10\.99\.0\.0\.\.10\.99\.0\.255\]/,
      );
      await charonSays(charon, /traffic selectors 10\.99\.0\.0\/24 === 10\.20\.0\.0\/24 unacceptable/);
    });

    it('no common ESP proposal, strongSwan initiating: the core names both sides’ ESP proposals', async () => {
      const { host, charon } = await bringUp({
        swInitiates: true,
        esp: 'aes256gcm16',
        swEsp: 'aes128-sha1',
        ours: {},
      });
      const f = await failure(host, charon);
      assert.equal(f.failure, 'child-no-proposal-chosen');
      assert.match(
        f.message!,
        /no common ESP proposal with fqdn:sw\.example: peer offered \[aes128-sha1(-noesn)?\]; we accept \[aes256gcm16(-noesn)?\]/,
      );
      await charonSays(charon, /received NO_PROPOSAL_CHOSEN notify/);
    });

    it('no common ESP proposal, Weft initiating: NO_PROPOSAL_CHOSEN from strongSwan, ours named', async () => {
      const { host, charon } = await bringUp({
        swInitiates: false,
        esp: 'aes256gcm16',
        swEsp: 'aes128-sha1',
        ours: {},
      });
      const f = await failure(host, charon);
      assert.equal(f.failure, 'child-no-proposal-chosen');
      assert.match(
        f.message!,
        /answered NO_PROPOSAL_CHOSEN for the CHILD SA: none of our ESP proposals \[aes256gcm16(-noesn)?\]/,
      );
      await charonSays(charon, /no acceptable proposal found/);
      // strongSwan does not send its proposals back; its own log names both lists.
      await charonSays(charon, /received proposals: ESP:AES_GCM_16_256/);
      await charonSays(charon, /configured proposals: ESP:AES_CBC_128\/HMAC_SHA1_96/);
    });
  },
);
