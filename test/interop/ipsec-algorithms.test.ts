/**
 * Every algorithm and DH group Weft offers, negotiated with strongSwan 5.9 (charon-systemd + swanctl,
 * kernel-libipsec) at least once, IKE and ESP: one charon and one Weft gateway (ipsec-gateway-lab.ts) for
 * the whole file, and for each row of the table below both sides are given exactly that IKE and ESP proposal
 * (charon reloads its connection, Weft's site is updated, which restarts it), the tunnel comes up (each side
 * initiating in turn), swanctl --list-sas must name the same algorithms Weft reports, pings cross the ESP
 * both ways, then the CHILD SA is rekeyed with PFS (the ESP proposal's DH group, in CREATE_CHILD_SA: by
 * strongSwan, or by Weft with a short CHILD lifetime) and pings cross the new SA.
 *
 * The table covers: encryption AES-CBC-128/256, AES-GCM-16 128/256, ChaCha20-Poly1305 in IKE and ESP;
 * integrity HMAC-SHA1-96, HMAC-SHA2-256/384/512 in IKE and ESP; PRFs sha1/256/384/512; DH 14, 19, 20, 21, 31,
 * and 2 and 5 with the site's allowLegacyGroups, in IKE_SA_INIT and in a CHILD rekey; ESN off. ESN on cannot
 * be shown against strongSwan here: kernel-libipsec refuses ESN SAs ("IPsec SA: ESN not supported", the CHILD
 * SA then fails with NO_PROPOSAL_CHOSEN), so every row says noesn; one case shows strongSwan selecting Weft's ESN
 * proposal (EXT_SEQ) before libipsec refuses it. A last case checks that a peer offering only group 2 is refused while legacy groups are off, with a log line
 * that says so.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';

import type { SiteSpec } from '../../src/ipsec/site-spec.js';
import { ping } from './gateway-lab.js';
import { interopSkip, JsonLinesProcess, Lab, waitFor } from './harness.js';
import {
  hostStatus,
  NETS,
  siteSpec,
  startWeft,
  swConnection,
  topology,
  waitSiteState,
  weftLog,
  type GatewayEvent,
  type Topology,
} from './ipsec-gateway-lab.js';
import { Charon, startCharon, STRONGSWAN_TOOLS, swanctlConf } from './strongswan.js';

const TOOLS = [...STRONGSWAN_TOOLS, 'ping'];

interface Row {
  ike: string;
  /** The ESP proposal as both sides are configured: its DH group is used only by the CHILD rekey (PFS). */
  esp: string;
  weftInitiates: boolean;
  /** Who rekeys the CHILD SA with PFS. */
  rekeyBy: 'strongswan' | 'weft';
  legacy?: boolean;
}

const ROWS: Row[] = [
  {
    ike: 'aes128-sha1-prfsha1-modp2048',
    esp: 'aes128-sha1-modp2048-noesn',
    weftInitiates: true,
    rekeyBy: 'strongswan',
  },
  {
    ike: 'aes256-sha256-prfsha256-ecp256',
    esp: 'aes256-sha256-ecp256-noesn',
    weftInitiates: false,
    rekeyBy: 'weft',
  },
  {
    ike: 'aes128gcm16-prfsha384-ecp384',
    esp: 'aes128gcm16-ecp384-noesn',
    weftInitiates: true,
    rekeyBy: 'weft',
  },
  {
    ike: 'aes256gcm16-prfsha512-ecp521',
    esp: 'aes256gcm16-ecp521-noesn',
    weftInitiates: false,
    rekeyBy: 'strongswan',
  },
  {
    ike: 'chacha20poly1305-prfsha256-x25519',
    esp: 'chacha20poly1305-x25519-noesn',
    weftInitiates: true,
    rekeyBy: 'strongswan',
  },
  {
    ike: 'aes256-sha384-prfsha384-modp1024',
    esp: 'aes128-sha384-modp1024-noesn',
    weftInitiates: false,
    rekeyBy: 'weft',
    legacy: true,
  },
  {
    ike: 'aes128-sha512-prfsha512-modp1536',
    esp: 'aes256-sha512-modp1536-noesn',
    weftInitiates: true,
    rekeyBy: 'strongswan',
    legacy: true,
  },
];

/** strongSwan's names for our proposal words, as swanctl --list-sas prints them. */
const SWAN_NAMES: Record<string, string> = {
  aes128: 'AES_CBC-128',
  aes256: 'AES_CBC-256',
  aes128gcm16: 'AES_GCM_16-128',
  aes256gcm16: 'AES_GCM_16-256',
  chacha20poly1305: 'CHACHA20_POLY1305',
  sha1: 'HMAC_SHA1_96',
  sha256: 'HMAC_SHA2_256_128',
  sha384: 'HMAC_SHA2_384_192',
  sha512: 'HMAC_SHA2_512_256',
  prfsha1: 'PRF_HMAC_SHA1',
  prfsha256: 'PRF_HMAC_SHA2_256',
  prfsha384: 'PRF_HMAC_SHA2_384',
  prfsha512: 'PRF_HMAC_SHA2_512',
  modp1024: 'MODP_1024',
  modp1536: 'MODP_1536',
  modp2048: 'MODP_2048',
  ecp256: 'ECP_256',
  ecp384: 'ECP_384',
  ecp521: 'ECP_521',
  x25519: 'CURVE_25519',
  esn: 'ESN',
};

/** "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048" for "aes128-sha1-prfsha1-modp2048" (noesn is not shown). */
function swanName(proposal: string): string {
  return proposal
    .split('-')
    .filter((w) => w !== 'noesn')
    .map((w) => {
      const n = SWAN_NAMES[w];
      assert.ok(n, `no strongSwan name for ${w}`);
      return n;
    })
    .join('/');
}

/** Drops the DH group from an ESP proposal: what IKE_AUTH's CHILD SA negotiates (RFC 7296 §1.2). */
function withoutDh(esp: string): string {
  return esp
    .split('-')
    .filter((w) => !/^(modp|ecp|x25519)/.test(w))
    .join('-');
}

describe(
  'IPsec algorithms: every cipher, integrity, PRF and DH group with strongSwan 5.9',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab;
    let t: Topology;
    let charon: Charon | undefined;
    let host: JsonLinesProcess<GatewayEvent> | undefined;
    const seen = { rows: 0, started: Date.now() };

    before(async () => {
      lab = await Lab.create('ipalg', { tools: TOOLS });
      t = await topology(lab, 110);
      charon = await startCharon(lab, t.sw, { swanctl: swanctlConf([]) });
      host = await startWeft(lab, t.wf, [], [NETS.sw.v4]);
    });

    after(async () => {
      if (host) {
        host.command({ op: 'exit' });
        await host.process.stop(3_000).catch(() => undefined);
      }
      if (charon) {
        await charon.stop();
        await fsp.rm(charon.dir, { recursive: true, force: true });
      }
      await lab?.cleanup();
      process.stdout.write(`# ${seen.rows} rows in ${((Date.now() - seen.started) / 1000).toFixed(1)} s\n`);
    });

    let nextUpdate = 1;
    async function updateSites(sites: SiteSpec[]): Promise<void> {
      const id = nextUpdate++ + 1_000_000;
      host!.command({ op: 'update', sites, id });
      await host!.waitFor('updated', (e) => e.ev === 'updated' && e.id === id, 5_000);
    }

    async function loadCharon(ike: string, esp: string): Promise<void> {
      const conn = swConnection(t, { inner: 4, outer: 4, proposals: ike });
      conn.children[0]!.esp = esp;
      conn.children[0]!.startAction = 'none';
      // Only strongSwan's own rekeys (swanctl --rekey) and Weft's: no lifetimes of its own.
      await fsp.writeFile(`${charon!.dir}/swanctl/swanctl.conf`, swanctlConf([conn]), { mode: 0o600 });
      const out = await charon!.swanctl(['--load-all']);
      assert.match(out, /loaded connection 'weft'/, out);
      // Nothing left of the previous row.
      await charon!.swanctl(['--terminate', '--ike', 'weft', '--force', '--timeout', '2']);
    }

    async function bothPing(label: string): Promise<void> {
      for (const [from, to] of [
        [t.hw, NETS.sw.host4],
        [t.hs, NETS.weft.host4],
      ] as const) {
        const r = await ping(from, to, { count: 3, intervalS: 0.2, waitS: 2 });
        assert.equal(r.received, 3, `${label}: ping ${to}: ${r.output}\n${await weftLog(host!)}`);
      }
    }

    async function listSas(): Promise<string> {
      return charon!.swanctl(['--list-sas']);
    }

    for (const row of ROWS) {
      it(
        `IKE ${row.ike}, ESP ${row.esp}: ${row.weftInitiates ? 'Weft' : 'strongSwan'} initiates, ${row.rekeyBy === 'weft' ? 'Weft' : 'strongSwan'} rekeys the CHILD SA with PFS`,
        { timeout: 60_000 },
        async () => {
          const began = Date.now();
          await updateSites([]);
          await loadCharon(row.ike, row.esp);
          const spec = siteSpec({
            remoteAddress: t.sw4,
            ikeProposals: [row.ike],
            espProposals: [row.esp],
            allowLegacyGroups: row.legacy === true,
            startAction: row.weftInitiates ? 'initiate' : 'wait',
            // A Weft rekey: the CHILD SA's rekey time, short (minus up to 10% jitter).
            childLifetimeSec: row.rekeyBy === 'weft' ? 5 : 3_600,
            dpdIntervalSec: 0,
          });
          await updateSites([spec]);
          if (!row.weftInitiates) {
            const out = await charon!.swanctl(['--initiate', '--child', 'net', '--timeout', '20']);
            assert.match(out, /initiate completed successfully/, `${out}\n${await weftLog(host!)}`);
          }
          const st = await waitSiteState(host!, 'sw', 'up', 20_000, charon);
          assert.equal(st.ike?.initiator, row.weftInitiates);
          const espFirst = withoutDh(row.esp);
          assert.equal(st.ike?.proposal, row.ike);
          assert.equal(st.children[0]?.proposal, espFirst);
          const sas = await listSas();
          assert.ok(
            sas.includes(`\n    ${swanName(row.ike)}\n`) || sas.includes(` ${swanName(row.ike)}\n`),
            `strongSwan's IKE SA: ${swanName(row.ike)}\n${sas}`,
          );
          assert.ok(
            sas.includes(`ESP:${swanName(espFirst)}\n`),
            `strongSwan's CHILD SA: ESP:${swanName(espFirst)}\n${sas}`,
          );
          assert.ok(sas.includes(st.children[0]!.outboundSpi), sas);
          await bothPing('first CHILD SA');

          const firstIn = st.children[0]!.inboundSpi;
          if (row.rekeyBy === 'strongswan') await charon!.swanctl(['--rekey', '--child', 'net']);
          const rekeyed = await waitFor(
            'the CHILD SA rekeyed',
            async () => {
              const s = (await hostStatus(host!)).sites?.find((x) => x.name === 'sw');
              const c = s?.children.find((x) => x.inboundSpi !== firstIn && x.rekeyedAt !== null);
              return c ?? null;
            },
            { timeoutMs: 15_000, intervalMs: 200 },
          ).catch(async (error: unknown) => {
            throw new Error(
              `${(error as Error).message}\n${await weftLog(host!)}\n${await charon!.logTail()}`,
              { cause: error },
            );
          });
          assert.equal(rekeyed.proposal, row.esp);
          const after = await waitFor(
            'strongSwan to list the rekeyed CHILD SA',
            async () => {
              const out = await listSas();
              return out.includes(rekeyed.outboundSpi) ? out : null;
            },
            { timeoutMs: 10_000, intervalMs: 200 },
          );
          assert.ok(
            after.includes(`ESP:${swanName(row.esp)}\n`),
            `strongSwan's rekeyed CHILD SA: ESP:${swanName(row.esp)}\n${after}`,
          );
          await bothPing('rekeyed CHILD SA');
          const fin = (await hostStatus(host!)).sites![0]!;
          for (const c of fin.children) assert.deepEqual(c.drops, {}, JSON.stringify(c));
          seen.rows++;
          process.stdout.write(
            `# IKE ${row.ike} / ESP ${espFirst} → rekeyed ${rekeyed.proposal} by ${row.rekeyBy}: ${((Date.now() - began) / 1000).toFixed(1)} s\n`,
          );
        },
      );
    }

    it(
      'ESN on: strongSwan selects the same ESN proposal, and kernel-libipsec then refuses the SA (why no row has esn)',
      { timeout: 60_000 },
      async () => {
        await updateSites([]);
        await loadCharon('aes256-sha256-prfsha256-modp2048', 'aes256-sha512-esn');
        const logBefore = (await charon!.logText()).length;
        await updateSites([
          siteSpec({
            remoteAddress: t.sw4,
            ikeProposals: ['aes256-sha256-prfsha256-modp2048'],
            espProposals: ['aes256-sha512-esn'],
            dpdIntervalSec: 0,
          }),
        ]);
        const log = await waitFor(
          'charon to select and refuse the ESN SA',
          async () => {
            const text = (await charon!.logText()).slice(logBefore);
            return /ESN not supported/.test(text) ? text : null;
          },
          { timeoutMs: 15_000, intervalMs: 200 },
        );
        assert.match(log, /selected proposal: ESP:AES_CBC_256\/HMAC_SHA2_512_256\/EXT_SEQ/);
        const line = await host!.waitFor(
          'the refused CHILD SA in our log',
          (e) => e.ev === 'log' && /NO_PROPOSAL_CHOSEN for the CHILD SA/.test(e.line ?? ''),
          10_000,
        );
        assert.match(line.line!, /aes256-sha512-esn/);
      },
    );

    it(
      'a peer offering only DH group 2 is refused while legacy groups are off, with a log line that says why',
      { timeout: 60_000 },
      async () => {
        await updateSites([]);
        await loadCharon('aes256-sha256-prfsha256-modp1024', 'aes256-sha256');
        await updateSites([
          siteSpec({
            remoteAddress: t.sw4,
            ikeProposals: ['aes256-sha256-prfsha256-modp2048'],
            espProposals: ['aes256-sha256'],
            startAction: 'wait',
            dpdIntervalSec: 0,
          }),
        ]);
        const out = await charon!.swanctl(['--initiate', '--child', 'net', '--timeout', '10']);
        assert.doesNotMatch(out, /completed successfully/);
        const line = await host!.waitFor(
          'a log line about the refused proposal',
          (e) => e.ev === 'log' && /no-proposal-chosen: no common IKE proposal/.test(e.line ?? ''),
          10_000,
        );
        assert.match(line.line!, /peer offered \[aes256-sha256-prfsha256-modp1024\]/);
        assert.match(line.line!, /modp1024 is a legacy DH group.*allowLegacyGroups/);
        await waitFor(
          'charon to log NO_PROPOSAL_CHOSEN',
          async () => /NO_PROPOSAL_CHOSEN/.test(await charon!.logText()),
          {
            timeoutMs: 10_000,
          },
        );
        const st = (await hostStatus(host!)).sites![0]!;
        assert.notEqual(st.state, 'up');
      },
    );
  },
);
