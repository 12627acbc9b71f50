#!/usr/bin/env node
/**
 * The idle-ping comparison alone: `node dist/bench/idle-ping.js [--only A,B] [--rounds N] [--count N]` (root).
 *
 * Idle round trips move with whatever else the machine is doing, so one figure per configuration says little.
 * This brings the configurations up in turn, round after round (each round: every configuration up, 50 pings
 * to settle, then `--count` pings every 10 ms, down), and prints each round's p50 per configuration, then the
 * median and range of the p50s and the ratio of the medians to the first configuration. Default: ovpn-server
 * and weft-ovpn (the OpenVPN bar), 5 rounds of 200 pings.
 */
import { bringUp, CONFIGS } from './configurations.js';
import { ping, spread } from './measure.js';
import { CONFIG_IDS, type ConfigId } from './options.js';
import { Rig } from './rig.js';

const log = (line: string): void => void process.stderr.write(`${line}\n`);

function parse(argv: readonly string[]): { ids: ConfigId[]; rounds: number; count: number } {
  let ids: ConfigId[] = ['ovpn-server', 'weft-ovpn'];
  let rounds = 5;
  let count = 200;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[++i];
    if (value === undefined) throw new Error(`${arg ?? ''}: a value is needed`);
    if (arg === '--only') {
      const wanted = value.split(',').map((s) => s.trim());
      const unknown = wanted.filter((w) => !(CONFIG_IDS as readonly string[]).includes(w));
      if (unknown.length > 0) throw new Error(`--only: unknown ${unknown.join(', ')}`);
      ids = wanted as ConfigId[];
    } else if (arg === '--rounds' || arg === '--count') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new Error(`${arg}: a whole number 1..10000`);
      if (arg === '--rounds') rounds = n;
      else count = n;
    } else throw new Error(`unknown argument ${arg ?? ''}`);
  }
  return { ids, rounds, count };
}

async function main(): Promise<number> {
  const { ids, rounds, count } = parse(process.argv.slice(2));
  const rig = await Rig.create();
  const p50s = new Map<ConfigId, number[]>(ids.map((id) => [id, []]));
  const stop = (): void => void rig.cleanup().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for (let r = 1; r <= rounds; r++) {
      const line: string[] = [];
      for (const id of ids) {
        const tunnel = await bringUp(rig, id);
        try {
          await ping(rig, tunnel, 50, 0.01);
          const result = await ping(rig, tunnel, count, 0.01);
          p50s.get(id)!.push(result.p50Ms);
          line.push(`${id} ${result.p50Ms.toFixed(3)} (${result.received}/${result.sent})`);
        } finally {
          await tunnel.down();
        }
      }
      log(`round ${r}: ${line.join(', ')} ms`);
    }
  } finally {
    await rig.cleanup();
  }
  const base = spread(p50s.get(ids[0]!)!).median;
  for (const id of ids) {
    const s = spread(p50s.get(id)!);
    log(
      `${CONFIGS[id].label}: p50 median ${s.median.toFixed(3)} ms (${s.min.toFixed(3)}–${s.max.toFixed(3)}), ` +
        `${(s.median / base).toFixed(2)}× ${ids[0]!}`,
    );
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
