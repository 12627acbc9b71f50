/**
 * CI smoke test of the bench (`npm run bench -- --quick`): runs it with the shortest settings (1 run of 2 s per
 * measurement) into a temporary directory, and checks that every configuration moved data (throughput,
 * packets, ping replies), that the 1,000-peer section added its peers, and that the JSON and the SVG were
 * written. It never asserts a speed: the numbers depend on the machine and on what else runs on it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONFIG_IDS } from '../../bench/options.js';
import type { BenchResults } from '../../bench/results.js';
import { BENCH_TOOLS } from '../../bench/rig.js';
import { interopSkip } from './harness.js';

const BENCH = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
const TIMEOUT_MS = 240_000;

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Runs the bench as a child process; SIGTERM (it then tears down) if it overruns. */
function runBench(args: readonly string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BENCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (output.length > 200_000) output = output.slice(-200_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => {
      output += `\n[smoke test: bench still running after ${TIMEOUT_MS} ms; SIGTERM]\n`;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
    }, TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

describe('bench smoke: npm run bench -- --quick', { skip: interopSkip(BENCH_TOOLS) }, () => {
  it(
    'measures every configuration and writes the JSON and the SVG',
    { timeout: TIMEOUT_MS + 30_000 },
    async () => {
      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-bench-smoke-'));
      try {
        const { code, signal, output } = await runBench([
          '--quick',
          '--runs',
          '1',
          '--duration',
          '2',
          '--out',
          out,
        ]);
        const context = `bench output:\n${output.slice(-12_000)}`;
        assert.equal(signal, null, context);

        const latest = path.join(out, 'latest.json');
        assert.ok(fs.existsSync(latest), `no latest.json; ${context}`);
        const stamped = fs.readdirSync(out).filter((f) => /^\d{4}-.*\.json$/.test(f));
        assert.equal(stamped.length, 1, `timestamped JSON: ${stamped.join(', ')}`);
        const results = JSON.parse(fs.readFileSync(latest, 'utf8')) as BenchResults;

        assert.deepEqual(
          results.configs.map((c) => c.id),
          [...CONFIG_IDS],
        );
        for (const c of results.configs) {
          const what = `${c.label}: ${c.error ?? ''}\n${context}`;
          assert.ok(c.ok, what);
          assert.ok((c.tcp1?.mbps.median ?? 0) > 0, `TCP 1 stream moved nothing: ${what}`);
          assert.ok((c.tcp4?.mbps.median ?? 0) > 0, `TCP 4 streams moved nothing: ${what}`);
          assert.ok((c.udp?.runs[0]?.receivedPackets ?? 0) > 0, `no UDP packet arrived: ${what}`);
          assert.ok((c.pingIdle?.received ?? 0) > 0, `no ping reply (idle): ${what}`);
          assert.ok((c.pingLoaded?.received ?? 0) > 0, `no ping reply (loaded): ${what}`);
          if (c.id !== 'plain') {
            assert.equal(c.ends?.length, 2, what);
            assert.ok((c.tcpCpuSeconds ?? 0) > 0, `no CPU time measured for the tunnel processes: ${what}`);
            assert.ok((c.peakRssBytes ?? 0) > 0, `no RSS measured: ${what}`);
          }
        }
        assert.equal(results.peers?.listedPeers, 1000, context);
        assert.equal(code, 0, context);

        const svg = fs.readFileSync(path.join(out, 'latest.svg'), 'utf8');
        assert.match(svg, /^<\?xml[^>]*\?>\s*<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
        assert.match(svg, /<\/svg>\s*$/);
        assert.ok((svg.match(/<rect /g) ?? []).length > 20, 'the chart has bars');
        for (const c of results.configs) assert.ok(svg.includes(c.label), `chart legend lacks ${c.label}`);
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
