/**
 * Command-line and environment options of `npm run bench`.
 *
 *   --quick            a few seconds per measurement (what CI uses): 1 run, 2 s, no warm-up
 *   --runs N           TCP/UDP runs per configuration (median and spread are reported); default 3
 *   --duration S       seconds per TCP run; default 10 (UDP and loaded-ping runs are shorter, see below)
 *   --only A,B,...     configurations / sections to run: plain, wg-go, openvpn, weft, weft-wg-go, ovpn-server,
 *                      weft-ovpn, peers, flood, ipsec (bench/esp.ts; in a full run, not with --quick),
 *                      multicast (bench/multicast.ts; in a full run, not with --quick)
 *   --flood            the flood section only (a handshake flood against a gateway with a member; not in the
 *                      default run); with --only, added to the sections listed
 *   --reverse          TCP runs (throughput, CPU per GB, loaded ping) from the server side to the client
 *                      (iperf3 -R: a download through the gateway); UDP, pings and the flood stay as they are
 *   --out DIR          where results go; default bench/results/ in the repository
 *   --report FILE      measure nothing: print the report of a saved results JSON and redraw its chart
 *                      (FILE with .svg instead of .json)
 *   --help
 *
 * The same as environment variables: BENCH_QUICK=1, BENCH_RUNS, BENCH_DURATION, BENCH_ONLY, BENCH_OUT,
 * BENCH_REVERSE=1.
 * Arguments win over the environment.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONFIG_IDS = [
  'plain',
  'wg-go',
  'openvpn',
  'weft',
  'weft-wg-go',
  'ovpn-server',
  'weft-ovpn',
] as const;
export type ConfigId = (typeof CONFIG_IDS)[number];
/** The 1,000-peer memory / UAPI section. */
export const PEERS_SECTION = 'peers';
/** The handshake-flood section (bench/flood.ts); run only when asked for. */
export const FLOOD_SECTION = 'flood';
/** The IPsec section (bench/esp.ts): in a full run, not in --quick unless named in --only. */
export const IPSEC_SECTION = 'ipsec';
/** The multicast section (bench/multicast.ts): in a full run, not in --quick unless named in --only. */
export const MULTICAST_SECTION = 'multicast';
export const SECTION_IDS: readonly string[] = [
  ...CONFIG_IDS,
  PEERS_SECTION,
  FLOOD_SECTION,
  IPSEC_SECTION,
  MULTICAST_SECTION,
];

export interface BenchOptions {
  quick: boolean;
  /** Runs of each TCP / UDP measurement. */
  runs: number;
  /** Seconds per TCP throughput run (single stream and 4 streams). */
  tcpSeconds: number;
  /** Seconds per UDP small-packet run. */
  udpSeconds: number;
  /** Seconds of the TCP load that the loaded ping runs inside. */
  loadedPingSeconds: number;
  /** Idle ping: this many echo requests at `pingIntervalS`. */
  idlePings: number;
  pingIntervalS: number;
  /** An unmeasured TCP run before the measurements (lets JITs and caches warm up); 0 = none. */
  warmupSeconds: number;
  /** Configurations to run, in order. */
  configs: ConfigId[];
  /** Whether to run the 1,000-peer section. */
  peers: boolean;
  /** Whether to run the flood section. */
  flood: boolean;
  /** Whether to run the IPsec section. */
  ipsec: boolean;
  /** Whether to run the multicast section. */
  multicast: boolean;
  /** TCP runs carry data from the server side to the client (iperf3 -R: a download), not the other way. */
  reverse: boolean;
  /** Results directory (absolute). */
  outDir: string;
}

export const DEFAULT_OUT_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

export const USAGE = `usage: npm run bench -- [--quick] [--runs N] [--duration S] [--only ${SECTION_IDS.join(',')}] [--out DIR]
       npm run bench -- --report FILE.json
  --quick        a few seconds per measurement (CI): 1 run of 2 s, no warm-up
  --runs N       runs per TCP/UDP measurement (default 3; quick 1)
  --duration S   seconds per TCP run (default 10; quick 2)
  --only LIST    comma-separated configurations/sections (default: all but flood; ipsec and multicast
                 not with --quick)
  --flood        the handshake-flood section only (or, with --only, as well)
  --reverse      TCP runs (throughput, CPU per GB, loaded ping) carry data from the server side to the
                 client (iperf3 -R: a download through the gateway) instead of from the client
  --out DIR      results directory (default bench/results/)
  --report FILE  no measuring: print the report of a saved JSON, redraw its chart as FILE.svg
environment: BENCH_QUICK=1 BENCH_RUNS BENCH_DURATION BENCH_ONLY BENCH_OUT`;

export class UsageError extends Error {}

function positive(name: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(
      `${name} needs a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** Parses arguments (after the script name) and the environment. Throws UsageError on bad input. */
export function parseOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): BenchOptions | 'help' | { report: string } {
  const truthy = (s: string | undefined): boolean =>
    s !== undefined && s !== '' && s !== '0' && s !== 'false';
  let quick = truthy(env.BENCH_QUICK);
  let runs = env.BENCH_RUNS ? positive('BENCH_RUNS', env.BENCH_RUNS, true) : undefined;
  let duration = env.BENCH_DURATION ? positive('BENCH_DURATION', env.BENCH_DURATION, false) : undefined;
  let only = env.BENCH_ONLY || undefined;
  let out = env.BENCH_OUT || undefined;
  let floodFlag = false;
  let reverse = truthy(env.BENCH_REVERSE);

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0 && arg.startsWith('--')) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${name} needs a value`);
      return next;
    };
    switch (name) {
      case '--quick':
        quick = true;
        break;
      case '--runs':
        runs = positive('--runs', value(), true);
        break;
      case '--duration':
        duration = positive('--duration', value(), false);
        break;
      case '--only':
        only = value();
        break;
      case '--out':
        out = value();
        break;
      case '--flood':
        floodFlag = true;
        break;
      case '--reverse':
        reverse = true;
        break;
      case '-h':
      case '--help':
        return 'help';
      case '--report':
        return { report: path.resolve(value()) };
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }

  let configs: ConfigId[] = floodFlag ? [] : [...CONFIG_IDS];
  let peers = !floodFlag;
  let flood = floodFlag;
  let ipsec = !floodFlag && !quick;
  let multicast = !floodFlag && !quick;
  if (only !== undefined) {
    const wanted = only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const unknown = wanted.filter((w) => !SECTION_IDS.includes(w));
    if (unknown.length > 0 || wanted.length === 0) {
      throw new UsageError(
        `--only: unknown ${unknown.join(', ') || '(empty)'}; choose from ${SECTION_IDS.join(', ')}`,
      );
    }
    configs = CONFIG_IDS.filter((id) => wanted.includes(id));
    peers = wanted.includes(PEERS_SECTION);
    flood = floodFlag || wanted.includes(FLOOD_SECTION);
    ipsec = wanted.includes(IPSEC_SECTION);
    multicast = wanted.includes(MULTICAST_SECTION);
  }

  const tcpSeconds = duration ?? (quick ? 2 : 10);
  return {
    quick,
    runs: runs ?? (quick ? 1 : 3),
    tcpSeconds,
    udpSeconds: quick ? Math.min(tcpSeconds, 2) : Math.max(2, Math.round(tcpSeconds / 2)),
    loadedPingSeconds: quick ? Math.min(tcpSeconds, 2) : Math.max(2, Math.round(tcpSeconds * 0.6)),
    idlePings: quick ? 100 : 400,
    pingIntervalS: 0.01,
    warmupSeconds: quick ? 0 : 2,
    configs,
    peers,
    flood,
    ipsec,
    multicast,
    reverse,
    outDir: out === undefined ? DEFAULT_OUT_DIR : path.resolve(out),
  };
}
