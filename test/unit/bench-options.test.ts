/**
 * `npm run bench` options (bench/options.ts): the download direction (--reverse, BENCH_REVERSE) and how the
 * report names the direction of its TCP runs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseOptions, type BenchOptions } from '../../bench/options.js';
import { formatReport } from '../../bench/report.js';
import type { BenchResults } from '../../bench/results.js';

function options(argv: string[], env: NodeJS.ProcessEnv = {}): BenchOptions {
  const o = parseOptions(argv, env);
  assert.ok(typeof o === 'object' && 'configs' in o, 'options, not help or a report');
  return o;
}

describe('bench options: --reverse', () => {
  it('is off by default, on with --reverse or BENCH_REVERSE=1', () => {
    assert.equal(options([]).reverse, false);
    assert.equal(options(['--reverse']).reverse, true);
    assert.equal(options([], { BENCH_REVERSE: '1' }).reverse, true);
    assert.equal(options([], { BENCH_REVERSE: '0' }).reverse, false);
    assert.equal(options(['--quick', '--reverse', '--only', 'weft-ovpn']).reverse, true);
  });

  it('the report says which way the TCP runs went (results saved before --reverse read as uploads)', () => {
    const results = (reverse: boolean | undefined): BenchResults => ({
      schema: 1,
      startedAt: '2026-12-07T00:00:00Z',
      finishedAt: '2026-12-07T00:01:00Z',
      host: { hostname: 'h', kernel: 'k', cpus: 2, cpuModel: 'cpu', node: 'v22' },
      versions: {},
      options: {
        quick: true,
        runs: 1,
        tcpSeconds: 2,
        udpSeconds: 2,
        loadedPingSeconds: 2,
        idlePings: 100,
        pingIntervalS: 0.01,
        warmupSeconds: 0,
        ...(reverse === undefined ? {} : { reverse }),
      },
      configs: [],
    });
    assert.match(formatReport(results(true), []), /TCP from the server side to the client \(--reverse/);
    assert.match(formatReport(results(false), []), /TCP from the client to the server side:/);
    assert.match(formatReport(results(undefined), []), /TCP from the client to the server side:/);
  });
});
