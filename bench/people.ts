/**
 * `npm run bench:people`: the people VPN's control plane at scale, in one process, no root needed.
 *
 *   1. a fresh SQLite store; 10,000 members (in groups, with policies) created through POST /apply;
 *   2. the gateway side (GatewaySync over a real WireGuard Device) installs them all;
 *   3. 100 more members added one at a time over HTTP (127.0.0.1), each followed by the gateway's poll that
 *      installs it: the latency of each, and of a page of the member list;
 *   4. prints a table against the bars (adding a member to a gateway holding 10,000: under 100 ms) and writes
 *      bench/results/people-<time>.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApi } from '../src/api/server.js';
import { ControlPlane } from '../src/control/control-plane.js';
import { openSqliteStore } from '../src/control/store-sqlite.js';
import { GatewaySync } from '../src/server/gateway-sync.js';
import { Device } from '../src/wireguard/device.js';

const MEMBERS = Number(process.env['BENCH_MEMBERS'] ?? 10_000);
const ADDS = Number(process.env['BENCH_ADDS'] ?? 100);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-people-'));
  const store = openSqliteStore(join(dir, 'weft.db'));
  const init = ControlPlane.init(store, { endpoint: 'vpn.example.com', subnet: '10.64.0.0/16' });
  const cp = new ControlPlane(store);
  const app = buildApi({ controlPlane: cp });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no listening address');
  const base = `http://127.0.0.1:${address.port}/api/v1`;
  const headers = { authorization: `Bearer ${init.apiToken}`, 'content-type': 'application/json' };
  try {
    const state = {
      groups: ['eng', 'sales', 'ops'],
      routes: ['10.20.0.0/24'],
      policies: [
        { allow: 'eng', to: '10.20.0.0/24' },
        { allow: 'ops', to: 'any' },
        { allow: 'sales', to: 'group:eng:tcp/443' },
      ],
      members: Array.from({ length: MEMBERS }, (_, i) => ({
        name: `m${String(i).padStart(5, '0')}`,
        groups: [['eng', 'sales', 'ops'][i % 3]!],
      })),
    };
    let t0 = performance.now();
    const applied = await fetch(`${base}/apply`, { method: 'POST', headers, body: JSON.stringify(state) });
    if (applied.status !== 200) throw new Error(`apply: ${applied.status} ${await applied.text()}`);
    const applyMs = performance.now() - t0;

    const device = new Device({ privateKey: cp.gatewayPrivateKey() });
    const sync = new GatewaySync(cp, device);
    t0 = performance.now();
    sync.poll();
    const installAllMs = performance.now() - t0;
    if (sync.memberCount !== MEMBERS) throw new Error(`installed ${sync.memberCount} of ${MEMBERS}`);

    const add: number[] = [];
    const addAndInstall: number[] = [];
    for (let i = 0; i < ADDS; i++) {
      t0 = performance.now();
      const r = await fetch(`${base}/members`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ name: `extra${i}`, groups: ['eng'] }),
      });
      if (r.status !== 201) throw new Error(`add: ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
      add.push(performance.now() - t0);
      sync.poll();
      addAndInstall.push(performance.now() - t0);
    }
    if (sync.memberCount !== MEMBERS + ADDS) throw new Error('not every added member was installed');

    const page: number[] = [];
    for (let i = 0; i < 20; i++) {
      t0 = performance.now();
      const r = await fetch(`${base}/members?limit=100&after=m0${String(i * 400).padStart(4, '0')}`, {
        headers,
      });
      await r.arrayBuffer();
      page.push(performance.now() - t0);
    }
    add.sort((a, b) => a - b);
    addAndInstall.sort((a, b) => a - b);
    page.sort((a, b) => a - b);
    const rssMb = process.memoryUsage().rss / 2 ** 20;
    const rows: [string, string, string][] = [
      [`create ${MEMBERS} members (POST /apply)`, `${(applyMs / 1000).toFixed(2)} s`, '—'],
      [`gateway installs ${MEMBERS} members`, `${installAllMs.toFixed(0)} ms`, '—'],
      [
        `add one member with ${MEMBERS} present (HTTP) p50 / p95 / max`,
        `${quantile(add, 0.5).toFixed(1)} / ${quantile(add, 0.95).toFixed(1)} / ${add[add.length - 1]!.toFixed(1)} ms`,
        '< 100 ms',
      ],
      [
        '... and installed in the gateway p50 / p95 / max',
        `${quantile(addAndInstall, 0.5).toFixed(1)} / ${quantile(addAndInstall, 0.95).toFixed(1)} / ${addAndInstall[addAndInstall.length - 1]!.toFixed(1)} ms`,
        '< 100 ms',
      ],
      [
        'member list page of 100 (HTTP) p50 / max',
        `${quantile(page, 0.5).toFixed(1)} / ${page[page.length - 1]!.toFixed(1)} ms`,
        '—',
      ],
      ['process RSS', `${rssMb.toFixed(0)} MB`, '—'],
    ];
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    console.log(`${'measurement'.padEnd(w0)}  ${'result'.padEnd(w1)}  bar`);
    for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`);
    const worst = addAndInstall[addAndInstall.length - 1]!;
    console.log(
      worst < 100 ? 'PASS: every add, installed, under 100 ms' : `FAIL: slowest add ${worst.toFixed(1)} ms`,
    );
    const outDir = join(process.cwd(), 'bench', 'results');
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `people-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      `${JSON.stringify({ members: MEMBERS, adds: ADDS, applyMs, installAllMs, addMs: add, addAndInstallMs: addAndInstall, pageMs: page, rssMb }, null, 2)}\n`,
    );
    console.log(`results: ${file}`);
  } finally {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
