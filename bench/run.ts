#!/usr/bin/env node
/**
 * `npm run bench`: Weft against wireguard-go and OpenVPN on this machine. Builds the rig (two namespaces and a
 * veth pair), brings up each configuration in turn, measures it, tears it down; then the 1,000-peer section;
 * prints the tables and the bar checks, writes bench/results/<time>.json, latest.json, <time>.svg and
 * latest.svg, and removes everything it created (also on failure and on Ctrl-C). Options: bench/options.ts.
 *
 * Exit status: 0 when every configuration was measured (whatever the numbers), 1 when one failed, 2 on bad
 * arguments.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { run } from '../test/interop/harness.js';
import { renderChart } from './chart.js';
import { bringUp, CONFIGS, WEFT_MAIN, type Tunnel } from './configurations.js';
import { measureAll } from './measure.js';
import { parseOptions, USAGE, UsageError, type BenchOptions } from './options.js';
import { FLOOD_LIMITS, floodSection } from './flood.js';
import { PEER_COUNT, PEERS_ADD_LIMIT_S, PEERS_RSS_LIMIT, peersSection } from './peers.js';
import { barChecks, formatReport, writeJson } from './report.js';
import type {
  BenchResults,
  ConfigResult,
  FloodResult,
  IpsecResult,
  MulticastResult,
  PeersResult,
} from './results.js';
import { multicastSection, multicastText, LOSS_LIMIT, MULTICAST_BAR_RATIO, RECEIVERS } from './multicast.js';
import { ipsecSection } from './esp.js';
import { Rig } from './rig.js';

const log = (line: string): void => void process.stderr.write(`${line}\n`);

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function versions(): Promise<Record<string, string>> {
  const first = async (cmd: string, args: string[]): Promise<string> => {
    try {
      const r = await run(cmd, args, { allowFail: true, timeoutMs: 5_000 });
      return (
        `${r.stdout}${r.stderr}`
          .split('\n')
          .find((l) => l.trim())
          ?.trim() ?? '?'
      );
    } catch {
      return '?';
    }
  };
  const repo = path.resolve(path.dirname(WEFT_MAIN), '../../..'); // dist/src/cli/main.js -> repository
  const [wgGo, wg, openvpn, iperf3, ping, commit, dirty] = await Promise.all([
    first('wireguard-go', ['--version']),
    first('wg', ['--version']),
    first('openvpn', ['--version']),
    first('iperf3', ['--version']),
    first('ping', ['-V']),
    first('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']),
    run('git', ['-C', repo, 'status', '--porcelain'], { allowFail: true }).then(
      (r) => (r.stdout.trim() ? ' (with uncommitted changes)' : ''),
      () => '',
    ),
  ]);
  return { weft: `${commit}${dirty}`, 'wireguard-go': wgGo, wg, openvpn, iperf3, ping };
}

async function benchConfig(rig: Rig, options: BenchOptions, id: keyof typeof CONFIGS): Promise<ConfigResult> {
  const def = CONFIGS[id];
  log(`\n== ${def.label}: ${def.description}`);
  const result: ConfigResult = {
    id: def.id,
    label: def.label,
    description: def.description,
    server: def.server,
    client: def.client,
    ok: false,
  };
  let tunnel: Tunnel | undefined;
  try {
    const started = Date.now();
    tunnel = await bringUp(rig, id);
    log(`  up in ${((Date.now() - started) / 1000).toFixed(1)} s; target ${tunnel.target}`);
    await measureAll(rig, tunnel, options, result, (l) => log(l));
    result.ok = true;
  } catch (error) {
    log(`  FAILED: ${errorText(error)}`);
    result.error = errorText(error);
  } finally {
    await tunnel?.down().catch((error: unknown) => log(`  teardown: ${errorText(error)}`));
  }
  return result;
}

/** Pings per phase of the flood section (every 10 ms): 3 s, or 10 s for a full run. */
function floodPings(options: BenchOptions): number {
  return options.quick ? 300 : 1000;
}

/** `--report FILE`: the report and chart of saved results, without measuring. */
function reportOnly(file: string): number {
  const results = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults;
  const checks = barChecks(results);
  const svgFile = file.replace(/\.json$/, '') + '.svg';
  fs.writeFileSync(svgFile, renderChart(results, checks));
  console.log(`${formatReport(results, checks)}\n\nChart: ${svgFile}`);
  if (results.multicast) console.log(`\n${multicastText(results.multicast)}`);
  return 0;
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseOptions(process.argv.slice(2));
    if (parsed === 'help') {
      console.log(USAGE);
      return 0;
    }
    if ('report' in parsed) return reportOnly(parsed.report);
    options = parsed;
  } catch (error) {
    if (error instanceof UsageError) {
      log(`bench: ${error.message}\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  if (!fs.existsSync(WEFT_MAIN)) {
    log(`bench: ${WEFT_MAIN} is missing: build first (npm run build)`);
    return 1;
  }

  const startedAt = new Date();
  const cpus = os.cpus();
  const estimate =
    options.configs.length *
      (options.warmupSeconds +
        options.idlePings * options.pingIntervalS +
        options.runs * (2 * options.tcpSeconds + options.udpSeconds) +
        options.loadedPingSeconds +
        4) +
    (options.peers ? 8 : 0) +
    (options.flood ? 2 * (floodPings(options) * 0.01 + options.tcpSeconds) + 12 : 0) +
    (options.multicast ? (options.quick ? 40 : 90) : 0);
  log(
    `Weft bench: ${[...options.configs, ...(options.peers ? ['1,000 peers'] : []), ...(options.flood ? ['flood'] : []), ...(options.multicast ? ['multicast'] : [])].join(', ')}; ${options.runs} run(s), ` +
      `TCP ${options.tcpSeconds} s${options.reverse ? ' (reverse: server side → client)' : ''}, UDP ${options.udpSeconds} s${options.quick ? ' (quick)' : ''}; ` +
      `about ${Math.ceil(estimate / 60)} min`,
  );

  const rig = await Rig.create();
  // The harness reaps the lab on SIGINT/SIGTERM/SIGHUP (synchronously, before this listener runs); with a
  // second listener it no longer re-raises the signal, so this one finishes the job and exits.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log(`\nbench: ${signal}: torn down`);
      rig.removeWeftPidFiles();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }

  let results: BenchResults;
  try {
    log(
      `rig: namespaces ${rig.server.name} (server) and ${rig.client.name} (client), veth ${rig.serverVeth}/${rig.clientVeth}`,
    );
    const configs: ConfigResult[] = [];
    for (const id of options.configs) {
      configs.push(await benchConfig(rig, options, id));
      await delay(500);
    }
    let peers: PeersResult | undefined;
    if (options.peers) {
      log(`\n== 1,000 peers on one Weft interface`);
      try {
        peers = await peersSection(rig, (l) => log(l));
      } catch (error) {
        log(`  FAILED: ${errorText(error)}`);
        peers = {
          ok: false,
          error: errorText(error),
          peers: PEER_COUNT,
          addSeconds: Number.NaN,
          listedPeers: 0,
          rssBefore: 0,
          rssAfter: 0,
          peakRss: 0,
          limits: { rssBytes: PEERS_RSS_LIMIT, addSeconds: PEERS_ADD_LIMIT_S },
        };
      }
    }
    let flood: FloodResult | undefined;
    if (options.flood) {
      log(`\n== Flood: valid-mac1 handshake initiations against a Weft gateway with a connected member`);
      const pings = floodPings(options);
      try {
        flood = await floodSection(rig, { pings, tcpSeconds: options.tcpSeconds }, (l) => log(l));
      } catch (error) {
        log(`  FAILED: ${errorText(error)}`);
        flood = {
          ok: false,
          error: errorText(error),
          gateway: 'weft',
          member: 'wireguard-go',
          pings,
          tcpSeconds: options.tcpSeconds,
          limits: FLOOD_LIMITS,
        };
      }
    }
    let ipsec: IpsecResult | undefined;
    if (options.ipsec) {
      log(`\n== IPsec: Weft ↔ Weft ESP, strongSwan ↔ strongSwan, Weft ↔ strongSwan (single-stream TCP)`);
      try {
        ipsec = await ipsecSection(options.tcpSeconds, options.runs);
        log(ipsec.text);
      } catch (error) {
        log(`  FAILED: ${errorText(error)}`);
        ipsec = {
          ok: false,
          seconds: options.tcpSeconds,
          runs: options.runs,
          rows: [],
          failures: [errorText(error)],
          text: `IPsec: FAILED: ${errorText(error)}`,
        };
      }
    }
    let multicast: MulticastResult | undefined;
    if (options.multicast) {
      log(`\n== Multicast: 1 sender → ${RECEIVERS} receivers through \`weft server run\`, beside unicast`);
      try {
        multicast = await multicastSection(
          rig,
          { stepSeconds: options.quick ? 1 : 3, bisections: options.quick ? 2 : 4 },
          (l) => log(l),
        );
      } catch (error) {
        log(`  FAILED: ${errorText(error)}`);
        multicast = {
          ok: false,
          error: errorText(error),
          receivers: RECEIVERS,
          packetBytes: 200,
          stepSeconds: 0,
          lossLimitPercent: LOSS_LIMIT * 100,
          multicastSteps: [],
          unicastSteps: [],
          gatewayPeakRss: 0,
          barRatio: MULTICAST_BAR_RATIO,
        };
      }
    }
    results = {
      schema: 1,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      host: {
        hostname: os.hostname(),
        kernel: os.release(),
        cpus: cpus.length,
        cpuModel: cpus[0]?.model.replace(/\s+/g, ' ').trim() ?? '?',
        node: process.version,
      },
      versions: await versions(),
      options: {
        quick: options.quick,
        runs: options.runs,
        tcpSeconds: options.tcpSeconds,
        udpSeconds: options.udpSeconds,
        loadedPingSeconds: options.loadedPingSeconds,
        idlePings: options.idlePings,
        pingIntervalS: options.pingIntervalS,
        warmupSeconds: options.warmupSeconds,
        reverse: options.reverse,
      },
      configs,
      ...(peers ? { peers } : {}),
      ...(flood ? { flood } : {}),
      ...(ipsec ? { ipsec } : {}),
      ...(multicast ? { multicast } : {}),
    };
  } finally {
    log('\nteardown');
    await rig.cleanup().catch((error: unknown) => log(`teardown: ${errorText(error)}`));
  }

  const checks = barChecks(results);
  const stamp = results.startedAt.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const files = writeJson(options.outDir, stamp, { ...results, bars: checks });
  const svg = renderChart(results, checks);
  for (const name of [`${stamp}.svg`, 'latest.svg']) {
    const file = path.join(options.outDir, name);
    fs.writeFileSync(file, svg);
    files.push(file);
  }
  console.log(`\n${formatReport(results, checks)}\n`);
  if (results.ipsec) console.log(`${results.ipsec.text}\n`);
  if (results.multicast) console.log(`${multicastText(results.multicast)}\n`);
  console.log(`Results: ${files.join(', ')}`);
  const failed =
    results.configs.some((c) => !c.ok) ||
    (results.peers !== undefined && !results.peers.ok) ||
    (results.flood !== undefined && !results.flood.ok) ||
    (results.ipsec !== undefined && !results.ipsec.ok) ||
    (results.multicast !== undefined && !results.multicast.ok);
  return failed ? 1 : 0;
}

process.exitCode = await main();
