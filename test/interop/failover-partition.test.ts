/**
 * Failover when the holder of the shared address is cut off from PostgreSQL (a partition, not a crash): two real
 * `weft server run` gateways in namespaces of their own on one PostgreSQL (postgres-harness.ts), both with
 * `--shared-address`, reaching PostgreSQL over TCP through the LAN (a relay in the LAN's namespace to the
 * server's Unix socket, so the path can be cut); two real WireGuard members (wg-quick + wireguard-go) whose
 * Endpoint is the shared address. Steps:
 *   1. A holds the address, B stands by; both members connect through A and ping the gateway every 100 ms.
 *   2. The database's packets are dropped in A's namespace (nftables, both directions). A's main thread then
 *      waits for its store (up to 10 s per call), and its API does not answer meanwhile: shown by a /status
 *      request sent just after the cut, answered only after the address was gone. The thread that keeps A's
 *      lease removes the address at its deadline (X); PostgreSQL frees the lease 1 s later and B takes it and
 *      adds the address (Y). Checked: Y > X by the gateways' own log lines and by the kernel's record of each
 *      namespace's addresses (`ip -ts monitor address`: A deletes it once, B adds it once, later), and samples
 *      of both namespaces (one `ip` every 50 ms in each; slower on a loaded machine) never show both holding
 *      it; the members' pings resume through B (the longest gap in replies is measured).
 *   3. The path is restored: A reaches the store again, stays standby (B holds the lease), and both exit 0 on
 *      SIGTERM.
 *
 * Topology: namespace `lan` holds a bridge with member 1's underlay address 192.168.75.201/24 and the database
 * relay's 192.168.75.50:5432; member 2 (192.168.75.202), gateway A (192.168.75.1) and B (192.168.75.2) hang off
 * it; the shared address is 192.168.75.100/24 on the gateway's LAN interface. Each gateway's API listens on
 * 127.0.0.1:8780 in its namespace.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join as joinPath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { interopSkip, type ManagedProcess, type Netns } from './harness.js';
import { ping, WEFT_MAIN, within } from './gateway-lab.js';
import { PEOPLE_TOOLS, wgQuickUp } from './people-lab.js';
import { canRunPostgres } from './postgres-harness.js';
import { FailoverLab, need, replyTimes, type GatewayKey } from './failover-lab.js';

const SUBNET = '10.69.0.0/24';
const GATEWAY_IP = '10.69.0.1';
const PORT = 51820;
const SHARED = '192.168.75.100';
const DB = { host: '192.168.75.50', port: 5432 };
const UNDERLAY = { a: '192.168.75.1', b: '192.168.75.2', m1: '192.168.75.201', m2: '192.168.75.202' };
/**
 * The bar for the gap in the members' replies: the lease's timeout in PostgreSQL (3 s after the last check it
 * received), a standby's try interval (0.4 s) and the takeover; a holder that is cut off stops forwarding at the
 * cut (its main thread waits for the store).
 */
const GAP_BAR_MS = 8000;
const TOOLS = [...PEOPLE_TOOLS, 'nft'];
const RELAY = fileURLToPath(new URL('./unix-relay.js', import.meta.url));
/** Samples of who holds the address: this many at most (every 50 ms: 40 s). */
const SAMPLES = 800;

type MemberKey = 'm1' | 'm2';
const MEMBERS: Record<MemberKey, string> = { m1: 'alice', m2: 'bob' };

/** The time (ms since the epoch) of the first log line matching `pattern` (lines start with an ISO time). */
function loggedAt(stderr: string, pattern: RegExp): number | undefined {
  for (const line of stderr.split('\n'))
    if (pattern.test(line)) {
      const t = Date.parse(line.slice(0, line.indexOf(' ')));
      if (Number.isFinite(t)) return t;
    }
  return undefined;
}

const pgCan = canRunPostgres();
const skip = interopSkip(TOOLS) || (pgCan.ok ? false : pgCan.reason);

describe(
  'failover: a holder cut off from PostgreSQL gives the address up before the standby takes it',
  { skip },
  () => {
    const fl = new FailoverLab({ kind: 'fpart', tools: TOOLS, shared: `${SHARED}/24` });
    const storeUrl = `postgres://weft@${DB.host}:${DB.port}/weft`;
    const helpers: ManagedProcess[] = [];

    before(async () => {
      assert.ok(fs.existsSync(WEFT_MAIN), `${WEFT_MAIN} is missing: build first (npm run build)`);
      await fl.setup();
      const pgServer = need(fl.pg, 'PostgreSQL');
      const lan = await fl.createLan('lan', [`${UNDERLAY.m1}/24`, `${DB.host}/24`]);
      fl.ns.lan = lan;
      fl.ns.m1 = lan;
      const relay = lan.spawn(process.execPath, [
        RELAY,
        DB.host,
        String(DB.port),
        joinPath(pgServer.dir, 'socket', `.s.PGSQL.${pgServer.port}`),
      ]);
      helpers.push(relay);
      await relay.waitForOutput(/ready/, 10_000);
      const m2 = await fl.lab.netns('m2');
      fl.ns.m2 = m2;
      await fl.attach(m2, 'm2', `${UNDERLAY.m2}/24`);
      for (const key of ['a', 'b'] as const)
        await fl.addGateway(key, `g${key}`, `${UNDERLAY[key]}/24`, `w${key}`);
    });

    after(async () => {
      await fl.cleanup(15_000, helpers);
    });

    const netns = (key: GatewayKey | MemberKey | 'lan'): Netns => fl.netns(key);
    const server = (key: GatewayKey): ManagedProcess => fl.server(key);
    const weft = (key: GatewayKey, args: readonly string[]) => fl.weft(key, args);
    const start = (key: GatewayKey): ManagedProcess => fl.start(key);
    const hasShared = (key: GatewayKey): Promise<boolean> => fl.hasShared(key);

    it('1. A holds the shared address; both members connect through it', async () => {
      const init = await fl.init(storeUrl, `${SHARED}:${PORT}`, SUBNET, ['--default-policy', 'allow']);
      fl.token = /^api token: (\S+)/m.exec(init.stdout)?.[1] ?? '';
      assert.ok(fl.token, init.stdout);
      await fl.join(storeUrl, { a: `${UNDERLAY.a}:${PORT}`, b: `${UNDERLAY.b}:${PORT}` });
      const a = start('a');
      await a.waitForOutput(/failover: holder of 192\.168\.75\.100\/24/, 30_000);
      const b = start('b');
      await b.waitForOutput(/failover: standby for 192\.168\.75\.100\/24/, 30_000);
      assert.equal(await hasShared('a'), true, 'A has the shared address');
      assert.equal(await hasShared('b'), false, 'B has not');
      await Promise.all(
        (['m1', 'm2'] as const).map(async (key) => {
          await weft('a', ['member', 'add', MEMBERS[key]]);
          const config = (await weft('a', ['member', 'config', MEMBERS[key]])).stdout;
          fl.members[key] = await wgQuickUp(netns(key), fl.lab.ifname(`c${key}`), config);
          const p = await ping(netns(key), GATEWAY_IP, { count: 2, waitS: 3 });
          assert.ok(p.received >= 1, `${MEMBERS[key]} → ${GATEWAY_IP} through A:\n${p.output}`);
        }),
      );
      // "connected" is logged by the status report that writes the member's endpoint to the store (B reaches
      // out to it at the takeover).
      await a.waitForOutput(/member alice connected/, 8_000);
      await a.waitForOutput(/member bob connected/, 8_000);
    });

    it('2. the database cut off from A: A removes the address before B adds it; never both; pings resume', async (t) => {
      const a = server('a');
      const b = server('b');
      const pingers = (['m1', 'm2'] as const).map((key) => {
        const p = netns(key).spawn('ping', [
          '-4',
          '-n',
          '-D',
          '-i',
          '0.1',
          '-W',
          '1',
          '-w',
          '40',
          GATEWAY_IP,
        ]);
        helpers.push(p);
        return p;
      });
      // Whether each namespace holds the address, sampled there every 50 ms (one sampler per namespace, each
      // line "MS 0|1"; bash's own clock, so that a sample costs one `ip`).
      const samplers = (['a', 'b'] as const).map((key) => {
        const p = netns(key).spawn('bash', [
          '-c',
          `for ((i = 0; i < ${SAMPLES}; i++)); do s=$(ip -4 -o addr show dev ${fl.lanIf[key]}); ` +
            `t=\${EPOCHREALTIME/./}; [[ $s == *" ${SHARED}/24 "* ]] && h=1 || h=0; echo "\${t:0:-3} $h"; ` +
            `sleep 0.05; done`,
        ]);
        helpers.push(p);
        return p;
      });
      // And the kernel's own record of each change of the address in each namespace (`ip -ts monitor`): exact
      // times, where a sample costs a process and may come late on a loaded machine.
      const monitors = (['a', 'b'] as const).map((key) => {
        const p = netns(key).spawn('ip', ['-ts', 'monitor', 'address']);
        helpers.push(p);
        return p;
      });
      await delay(1_500);
      for (const [i, p] of pingers.entries())
        assert.ok(
          replyTimes(p.stdout).length >= 5,
          `${MEMBERS[i === 0 ? 'm1' : 'm2']} pings A:\n${p.stdout}`,
        );
      const rules = fl.lab.file('partition.nft');
      fs.writeFileSync(
        rules,
        `table inet partition {\n` +
          `  chain out { type filter hook output priority 0; ip daddr ${DB.host} tcp dport ${DB.port} drop; }\n` +
          `  chain in { type filter hook input priority 0; ip saddr ${DB.host} tcp sport ${DB.port} drop; }\n` +
          `}\n`,
      );
      const cutAt = Date.now();
      await netns('a').exec('nft', ['-f', rules]);
      // A's main thread is soon waiting for its store: a request to its API now is answered only when it is done.
      await delay(300);
      const askedAt = Date.now();
      const statusA = fl.get('a', ['/status'], 40_000).then(([reply]) => ({ reply, at: Date.now() }));
      await b.waitForOutput(/failover: holder of 192\.168\.75\.100\/24/, 15_000);
      await a.waitForOutput(/failover: removed 192\.168\.75\.100\/24/, 5_000);
      // The members' replies resume through B: wait until each has had 10 after the cut (at most 15 s).
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        if (pingers.every((p) => replyTimes(p.stdout).filter((at) => at > cutAt).length >= 10)) break;
        await delay(100);
      }
      const answered = await statusA;
      for (const p of pingers) p.kill('SIGINT');
      await Promise.all(pingers.map((p) => within(p.exited, 5_000)));
      for (const p of [...samplers, ...monitors]) p.kill('SIGTERM');
      await Promise.all(monitors.map((p) => within(p.exited, 5_000)));
      await Promise.all(samplers.map((p) => within(p.exited, 5_000)));

      // X: A's keeper removed the address; Y: B added it (its "holder" line follows the addition).
      const removedAt = need(loggedAt(a.stderr, /failover: removed 192\.168\.75\.100\/24/), "A's removal");
      const heldAt = need(loggedAt(b.stderr, /failover: holder of 192\.168\.75\.100\/24/), "B's takeover");
      const tookMs = Number(
        /failover: holder of \S+ on \S+ \(took it in (\d+) ms/.exec(b.stderr)?.[1] ?? NaN,
      );
      const [samplesA, samplesB] = samplers.map((p) =>
        p.stdout
          .trim()
          .split('\n')
          .map((l) => l.split(' ').map(Number))
          .filter((f): f is [number, number] => f.length === 2 && f[0]! >= cutAt - 1000),
      ) as [[number, number][], [number, number][]];
      // Never both: A was seen without the address before B was last seen without it (at the samples'
      // resolution), and A's last sample with it comes before B's first.
      const aFirstWithout = samplesA.find(([at, has]) => at > cutAt && has === 0)?.[0];
      const aLastWith = samplesA.filter(([, has]) => has === 1).at(-1)?.[0];
      const bLastWithout = samplesB.filter(([, has]) => has === 0).at(-1)?.[0];
      const bFirstWith = samplesB.find(([, has]) => has === 1)?.[0];
      // [time, added?] of each change of the shared address, per namespace.
      const [eventsA, eventsB] = monitors.map((p) =>
        [...p.stdout.matchAll(/^\[([\d-]+T[\d:.]+)\] (Deleted )?\d+: \S+\s+inet ([\d.]+)\/24/gm)]
          .filter((m) => m[3] === SHARED)
          .map((m): [number, boolean] => [Date.parse(m[1]!.slice(0, 23)), m[2] === undefined]),
      ) as [[number, boolean][], [number, boolean][]];
      const interval = (xs: [number, number][]): number => {
        const d = xs
          .slice(1)
          .map(([at], k) => at - xs[k]![0])
          .sort((x, y) => x - y);
        return d[d.length >> 1] ?? NaN;
      };
      const rel = (at: number | undefined): string => (at === undefined ? '?' : `+${at - cutAt} ms`);
      const gaps: string[] = [];
      const gapMs: number[] = [];
      for (const [i, p] of pingers.entries()) {
        const times = replyTimes(p.stdout);
        // The longest silence between two replies, from a second before the cut to the end.
        const around = times.filter((at) => at >= cutAt - 1000);
        if (around.length < 2 || around[0]! > cutAt || around.at(-1)! < heldAt)
          assert.fail(
            `${MEMBERS[i === 0 ? 'm1' : 'm2']}: no replies around the cut:\n${p.stdout}\nB:\n${b.stderr}`,
          );
        let gap = 0;
        let resumed = 0;
        for (let k = 1; k < around.length; k++)
          if (around[k]! - around[k - 1]! > gap) {
            gap = around[k]! - around[k - 1]!;
            resumed = around[k]!;
          }
        gapMs.push(gap);
        gaps.push(`${MEMBERS[i === 0 ? 'm1' : 'm2']} ${gap} ms (replies again ${rel(resumed)})`);
      }
      const line =
        `partition of the holder from PostgreSQL: A removed the address (X) ${rel(removedAt)} after the cut, ` +
        `B held it (Y) ${rel(heldAt)} (Y - X = ${heldAt - removedAt} ms; B's takeover ${tookMs} ms); sampled ` +
        `(${samplesA.length} + ${samplesB.length} samples, median intervals ${interval(samplesA)} / ` +
        `${interval(samplesB)} ms): A last with it ${rel(aLastWith)}, first without ${rel(aFirstWithout)}; ` +
        `B last without it ${rel(bLastWithout)}, first with ${rel(bFirstWith)}; the kernel's record: A ` +
        `${eventsA.map(([at, add]) => `${add ? 'added' : 'deleted'} ${rel(at)}`).join(', ') || 'nothing'}, B ` +
        `${eventsB.map(([at, add]) => `${add ? 'added' : 'deleted'} ${rel(at)}`).join(', ') || 'nothing'}; A's API, asked ` +
        `${rel(askedAt)}, answered ${rel(answered.at)}; gap in the members' replies: ${gaps.join(', ')}`;
      console.log(line);
      t.diagnostic(line);
      assert.ok(removedAt < heldAt, `A removed it (X) before B added it (Y): ${line}`);
      // The kernel's record: A deleted the address once and never added it back; B added it after that.
      assert.deepEqual(
        eventsA.map(([, add]) => add),
        [false],
        `A: one deletion, nothing else: ${line}`,
      );
      assert.deepEqual(
        eventsB.map(([, add]) => add),
        [true],
        `B: one addition, nothing else: ${line}`,
      );
      assert.ok(eventsA[0]![0] < eventsB[0]![0], `A's deletion before B's addition: ${line}`);
      // The samples agree: none saw both at once (A's last sample with it before B's first).
      assert.ok(bFirstWith !== undefined, line);
      assert.ok(aLastWith === undefined || aLastWith < bFirstWith, line);
      assert.ok(
        aFirstWithout === undefined || bLastWithout === undefined || aFirstWithout <= bFirstWith,
        line,
      );
      assert.ok(
        answered.at > removedAt,
        `A's main thread was busy with its store when the address went (its API answered after): ${line}`,
      );
      assert.equal(await hasShared('a'), false);
      assert.equal(await hasShared('b'), true);
      for (const g of gapMs) assert.ok(g <= GAP_BAR_MS, `${line}\nA:\n${a.stderr}\nB:\n${b.stderr}`);
    });

    it('3. the path restored: A reaches the store again and stays standby; both exit 0 on SIGTERM', async () => {
      const a = server('a');
      const b = server('b');
      await netns('a').exec('nft', ['delete', 'table', 'inet', 'partition']);
      await a.waitForOutput(/store: reachable again/, 60_000);
      await delay(1_500); // A has tried the lease a few times by now
      assert.doesNotMatch(
        a.stderr.slice(a.stderr.indexOf('failover: removed')),
        /failover: holder/,
        a.stderr,
      );
      const logs = `A:\n${a.stderr}\nB:\n${b.stderr}`;
      assert.equal(await hasShared('a'), false, `A has not taken the address back\n${logs}`);
      assert.equal(await hasShared('b'), true, `B holds it\n${logs}`);
      for (const s of [a, b]) {
        s.kill('SIGTERM');
        assert.equal((await within(s.exited, 30_000))?.code, 0, s.describe());
      }
      assert.equal(await hasShared('b'), false, 'a stopped holder removes the address');
    });
  },
);
