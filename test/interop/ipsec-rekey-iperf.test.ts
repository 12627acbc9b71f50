/**
 * Rekeying under load: an iperf3 TCP flow from a host behind Weft's IPsec gateway to a host behind strongSwan
 * 5.9 (kernel-libipsec) for 30 s while both sides rekey, on short lifetimes (Weft: CHILD 9 s, IKE 16 s;
 * strongSwan: CHILD 7 s, IKE 13 s) and on command: strongSwan rekeys the CHILD SA, Weft rekeys it, strongSwan
 * rekeys the IKE SA, Weft rekeys it, and both rekey the CHILD SA at the same moment (their requests held back
 * by nftables until both are outstanding, so they cross: a collision, RFC 7296 §2.8.1).
 *
 * Asserted: iperf3 (intervals of 0.25 s) never sees more than 1 s without a byte delivered; Weft's ESP drops
 * (replay, ICV, ... per SA, sampled every 250 ms, and the ESP port's count of packets it could not open) stay
 * at 0; strongSwan's log has no ESP verification failures; the site is up with one CHILD SA at the end.
 * Printed: rekeys by each side, the longest gap, throughput.
 */
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { waitForTcpListener } from './gateway-lab.js';
import { interopSkip, JsonLinesProcess, Lab } from './harness.js';
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
} from './ipsec-gateway-lab.js';
import { Charon, startCharon, STRONGSWAN_TOOLS, swanctlConf } from './strongswan.js';

const TOOLS = [...STRONGSWAN_TOOLS, 'ping', 'iperf3', 'ss', 'nft'];
const SECONDS = 30;
const INTERVAL_S = 0.25;

interface IperfInterval {
  sum: { start: number; end: number; bytes: number };
}

describe(
  'IPsec rekeying under an iperf3 flow: Weft gateway ↔ strongSwan 5.9',
  { skip: interopSkip(TOOLS) },
  () => {
    let lab: Lab | undefined;
    let charon: Charon | undefined;
    let host: JsonLinesProcess<GatewayEvent> | undefined;

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
    });

    it(
      `${SECONDS} s of TCP while CHILD and IKE SAs are rekeyed by each side and at once: no stall over 1 s, no ESP drop`,
      { timeout: 120_000 },
      async () => {
        lab = await Lab.create('iprk', { tools: TOOLS });
        const t = await topology(lab, 111);
        const conn = swConnection(t, { inner: 4, outer: 4, rekeyTime: '13s' });
        conn.children[0]!.rekeyTime = '7s';
        conn.children[0]!.esp = 'aes256gcm16-x25519';
        charon = await startCharon(lab, t.sw, { swanctl: swanctlConf([conn]) });
        await charon.swanctl(['--load-all']);
        host = await startWeft(
          lab,
          t.wf,
          [
            siteSpec({
              remoteAddress: t.sw4,
              espProposals: ['aes256gcm16-x25519'],
              ikeLifetimeSec: 16,
              childLifetimeSec: 9,
              dpdIntervalSec: 0,
            }),
          ],
          [NETS.sw.v4],
        );
        const h = host;
        const c = charon;
        await waitSiteState(h, 'sw', 'up', 30_000, c);

        // Sampling: every CHILD and IKE SA seen, and the largest drop counts of each.
        const childSpis = new Set<string>();
        const ikeSpis = new Set<string>();
        const drops = new Map<string, Record<string, number>>();
        let portDropped = 0;
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            const st = await hostStatus(h).catch(() => null);
            if (st === null) break;
            const site = st.sites?.find((s) => s.name === 'sw');
            if (site?.ike) ikeSpis.add(`${site.ike.spiI}_${site.ike.spiR}`);
            for (const ch of site?.children ?? []) {
              childSpis.add(ch.inboundSpi);
              if (Object.keys(ch.drops).length > 0) drops.set(ch.inboundSpi, { ...ch.drops });
            }
            portDropped = st.port?.['dropped'] ?? portDropped;
            await delay(250);
          }
        })();

        const port = 5301;
        const server = t.hs.spawn('iperf3', ['-s', '-1', '-p', String(port)]);
        await waitForTcpListener(t.hs, port);
        const started = Date.now();
        const client = t.hw.exec(
          'iperf3',
          [
            '-c',
            NETS.sw.host4,
            '-p',
            String(port),
            '-t',
            String(SECONDS),
            '-i',
            String(INTERVAL_S),
            '-J',
            '--connect-timeout',
            '5000',
          ],
          { allowFail: true, timeoutMs: SECONDS * 1000 + 30_000 },
        );
        const rekey = async (what: 'ike' | 'child'): Promise<void> => {
          const id = Math.floor(Math.random() * 1e9);
          h.command({ op: 'rekey', site: 'sw', what, id });
          const r = await h.waitFor('rekey', (e) => e.ev === 'rekeyed' && e.id === id, 5_000);
          assert.equal((r as { ok?: boolean }).ok, true);
        };
        const nft = async (command: string): Promise<void> => {
          const file = lab!.file(`hold-${Date.now()}.nft`);
          await fsp.writeFile(file, `${command}\n`);
          await t.sw.exec('nft', ['-f', file]);
        };
        const at = async (s: number): Promise<void> => {
          const wait = started + s * 1000 - Date.now();
          if (wait > 0) await delay(wait);
        };
        await at(4);
        await c.swanctl(['--rekey', '--child', 'net']);
        await at(8);
        await rekey('child');
        await at(12);
        await c.swanctl(['--rekey', '--ike', 'weft']);
        await at(16);
        await rekey('ike');
        // Both at once: IKE messages (UDP 4500 with the non-ESP marker, RFC 3948 §2.2) are held back in both
        // directions at strongSwan while each side starts its CHILD rekey, so both requests are outstanding when
        // they meet (each side retransmits after 4 s): a rekey collision (RFC 7296 §2.8.1). ESP keeps flowing.
        await at(20);
        await nft(
          [
            'table inet hold {',
            '  chain in {',
            '    type filter hook input priority 0;',
            '    udp dport 4500 @th,64,32 0 drop',
            '  }',
            '  chain out {',
            '    type filter hook output priority 0;',
            '    udp sport 4500 @th,64,32 0 drop',
            '  }',
            '}',
          ].join('\n'),
        );
        await Promise.all([rekey('child'), c.swanctl(['--rekey', '--child', 'net'])]);
        await delay(1_500);
        await nft('delete table inet hold');
        const result = await client;
        server.kill('SIGTERM');
        await server.stop(2_000).catch(() => undefined);
        await delay(1_000);
        sampling = false;
        await sampler;

        let report: {
          error?: string;
          intervals?: IperfInterval[];
          end?: { sum_received?: { bytes?: number; bits_per_second?: number } };
        };
        try {
          report = JSON.parse(result.stdout) as typeof report;
        } catch {
          throw new Error(`iperf3 printed no JSON (exit ${result.code}): ${result.stdout}${result.stderr}`);
        }
        assert.equal(report.error, undefined, `iperf3: ${report.error}\n${await weftLog(h)}`);
        const intervals = report.intervals ?? [];
        assert.ok(intervals.length >= SECONDS / INTERVAL_S - 2, `${intervals.length} intervals`);
        // The longest run of intervals that carried nothing.
        let gap = 0;
        let longest = 0;
        for (const i of intervals) {
          if (i.sum.bytes === 0) gap += i.sum.end - i.sum.start;
          else gap = 0;
          longest = Math.max(longest, gap);
        }
        const log = await c.logText();
        // CREATE_CHILD_SA requests as charon logs them: a CHILD rekey carries REKEY_SA and traffic selectors, an
        // IKE rekey neither; "generating" ones are strongSwan's, "parsed" ones Weft's (retransmissions included).
        const requests = (verb: string, child: boolean): number =>
          log
            .split('\n')
            .filter(
              (l) => l.includes(`${verb} CREATE_CHILD_SA request`) && l.includes('N(REKEY_SA)') === child,
            ).length;
        const by = {
          swChild: requests('generating', true),
          swIke: requests('generating', false),
          weftChild: requests('parsed', true),
          weftIke: requests('parsed', false),
        };
        const collisions = log.split('\n').filter((l) => /collision/i.test(l)).length;
        const slowest = Math.min(
          ...intervals.map((i) => i.sum.bytes / Math.max(i.sum.end - i.sum.start, 0.001)),
        );
        const espFailures = log.split('\n').filter((l) => /\[ESP\].*(fail|replay|invalid|discard)/i.test(l));
        const mbps = (report.end?.sum_received?.bits_per_second ?? 0) / 1e6;
        process.stdout.write(
          `# ${SECONDS} s iperf3 through the rekeys: ${mbps.toFixed(0)} Mbit/s, longest interval run without a byte ${longest.toFixed(2)} s, slowest interval ${((slowest * 8) / 1e6).toFixed(0)} Mbit/s; ` +
            `${childSpis.size - 1} CHILD rekeys, ${ikeSpis.size - 1} IKE rekeys (CREATE_CHILD_SA requests for a CHILD / IKE rekey: by strongSwan ${by.swChild} / ${by.swIke}, by Weft ${by.weftChild} / ${by.weftIke}; charon log lines about a rekey collision: ${collisions}); ` +
            `Weft ESP drops per SA ${JSON.stringify(Object.fromEntries(drops))}, ESP port unopened ${portDropped}; strongSwan ESP failures ${espFailures.length}\n`,
        );
        assert.ok(longest <= 1, `a stall of ${longest} s`);
        assert.ok(childSpis.size - 1 >= 3, `${childSpis.size - 1} CHILD rekeys`);
        assert.ok(ikeSpis.size - 1 >= 2, `${ikeSpis.size - 1} IKE rekeys`);
        for (const [who, n] of Object.entries(by))
          assert.ok(n >= 1, `no ${who} rekey: ${JSON.stringify(by)}`);
        assert.deepEqual(Object.fromEntries(drops), {}, 'ESP drops on Weft');
        assert.equal(portDropped, 0, 'ESP packets Weft could not open');
        assert.deepEqual(espFailures, [], "strongSwan's ESP failures");
        const end = await waitSiteState(h, 'sw', 'up', 10_000, c);
        assert.ok(end.children.length >= 1);
      },
    );
  },
);
