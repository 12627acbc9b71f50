/**
 * ESP bench, standalone (as root): `npm run build && node dist/bench/esp.js [--seconds N] [--runs N]
 * [--only udp,raw,swan,wsw] [--reverse]`. `--only` picks pairs (`--swan-only` is `--only swan`); `--reverse`
 * has the host behind the second gateway send, so the first gateway opens instead of sealing.
 * Weft ↔ Weft ESP (aes256gcm16, tunnel mode, UDP 4500 and raw ESP) in the namespaces of the interop test
 * (test/interop/esp-lab.ts): single-stream TCP through iperf3 from the host behind one gateway to the host
 * behind the other, with the CPU seconds the two ESP processes spent per GB carried and their peak RSS.
 *
 * strongSwan ↔ strongSwan in the same topology for the ratio (../shared notes): charon-systemd with
 * kernel-libipsec (this kernel has no ESP), IKEv2 aes256gcm16-prfsha256-x25519 with a PSK, ESP aes256gcm16;
 * each charon in a mount namespace of its own (tmpfs on /run, its own strongswan.conf and swanctl/).
 *
 * Weft ↔ strongSwan: Weft's IPsec gateway (IKEv2 and ESP joined, test/interop/ipsec-gateway-host.ts) on one
 * side initiating to one charon on the other, same suites. Throughput ratios are to strongSwan ↔ strongSwan;
 * the results are also saved as bench/results/esp-<time>.json.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { SiteSpec, SiteStatus } from '../src/ipsec/site-spec.js';
import { JsonLinesProcess, Lab, waitFor, type ManagedProcess, type Netns } from '../test/interop/harness.js';
import type { IpsecGatewayHostConfig } from '../test/interop/ipsec-gateway-host.js';
import { startCharon as startStrongswan, swanctlConf } from '../test/interop/strongswan.js';
import { DEFAULT_OUT_DIR } from './options.js';
import type { IpsecResult, IpsecRow } from './results.js';
import { iperf3, linkedPair } from '../test/interop/gateway-lab.js';
import { espTopology } from '../test/interop/esp-lab.js';
import { cpuSecondsBetween, cpuSnapshot, memoryOf } from './procstat.js';

const IPSEC_HOST = fileURLToPath(new URL('../test/interop/ipsec-gateway-host.js', import.meta.url));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

interface Charon {
  process: ManagedProcess;
  log: string;
}

async function startCharon(
  lab: Lab,
  ns: Netns,
  side: 'a' | 'b',
  local: string,
  remote: string,
  localTs: string,
  remoteTs: string,
): Promise<Charon> {
  const dir = lab.file(`charon-${side}`);
  await fsp.mkdir(path.join(dir, 'swanctl', 'conf.d'), { recursive: true });
  const log = path.join(dir, 'charon.log');
  await fsp.writeFile(
    path.join(dir, 'strongswan.conf'),
    [
      'charon {',
      '  load_modular = yes',
      '  plugins {',
      '    include /etc/strongswan.d/charon/*.conf',
      '    kernel-libipsec {',
      '      load = yes',
      '    }',
      '  }',
      '}',
      'charon-systemd {',
      '  load_modular = yes',
      '  plugins {',
      '    include /etc/strongswan.d/charon/*.conf',
      '    kernel-libipsec {',
      '      load = yes',
      '    }',
      '  }',
      '  filelog {',
      '    f {',
      `      path = ${log}`,
      '      default = 1',
      '    }',
      '  }',
      '}',
      'include /etc/strongswan.d/swanctl.conf',
      '',
    ].join('\n'),
  );
  const ids = side === 'a' ? ['a.weft.test', 'b.weft.test'] : ['b.weft.test', 'a.weft.test'];
  await fsp.writeFile(
    path.join(dir, 'swanctl', 'swanctl.conf'),
    [
      'connections {',
      '  net {',
      '    version = 2',
      `    local_addrs = ${local}`,
      `    remote_addrs = ${remote}`,
      '    proposals = aes256gcm16-prfsha256-x25519',
      '    local {',
      '      auth = psk',
      `      id = ${ids[0]}`,
      '    }',
      '    remote {',
      '      auth = psk',
      `      id = ${ids[1]}`,
      '    }',
      '    children {',
      '      net {',
      `        local_ts = ${localTs}`,
      `        remote_ts = ${remoteTs}`,
      '        esp_proposals = aes256gcm16',
      side === 'a' ? '        start_action = start' : '',
      '      }',
      '    }',
      '  }',
      '}',
      'secrets {',
      '  ike-1 {',
      '    id-1 = a.weft.test',
      '    id-2 = b.weft.test',
      '    secret = "weft-bench-preshared-key-0123456789"',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const script = [
    'set -e',
    // The lab's directory is under /run: bind its files before /run is covered.
    `mount --bind ${dir}/strongswan.conf /etc/strongswan.conf`,
    `mount --bind ${dir}/swanctl /etc/swanctl`,
    'mount -t tmpfs none /run',
    'exec /usr/sbin/charon-systemd',
  ].join('; ');
  const proc = ns.spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
  return { process: proc, log };
}

async function swanctl(ns: Netns, charon: Charon, args: string[]): Promise<string> {
  const r = await ns.exec('nsenter', ['-t', String(charon.process.pid), '-m', 'swanctl', ...args], {
    allowFail: true,
  });
  return `${r.stdout}${r.stderr}`;
}

/** The same four namespaces as esp-lab.ts, with two charons instead of Weft. */
export async function strongswanTopology(lab: Lab, n: number) {
  const { a: gwA, b: gwB, a4, b4 } = await linkedPair(lab, 'gwa', 'gwb', n);
  const ha = await lab.netns('ha');
  const hb = await lab.netns('hb');
  await lab.veth(ha, gwA, { aAddr: '10.1.0.2/24', bAddr: '10.1.0.1/24' });
  await lab.veth(hb, gwB, { aAddr: '10.2.0.2/24', bAddr: '10.2.0.1/24' });
  await ha.exec('ip', ['route', 'add', 'default', 'via', '10.1.0.1']);
  await hb.exec('ip', ['route', 'add', 'default', 'via', '10.2.0.1']);
  for (const gw of [gwA, gwB]) await gw.sysctl('net.ipv4.ip_forward', 1);
  const b = await startCharon(lab, gwB, 'b', b4, a4, '10.2.0.0/24', '10.1.0.0/24');
  const a = await startCharon(lab, gwA, 'a', a4, b4, '10.1.0.0/24', '10.2.0.0/24');
  for (const [ns, c] of [
    [gwB, b],
    [gwA, a],
  ] as const) {
    let last = '';
    await waitFor(
      "charon's vici socket",
      async () => (last = await swanctl(ns, c, ['--stats'])).includes('uptime'),
      { timeoutMs: 15_000, intervalMs: 200 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${last} ${c.process.describe()}`);
    });
    await swanctl(ns, c, ['--load-all']);
  }
  await swanctl(gwA, a, ['--initiate', '--child', 'net']);
  await waitFor(
    'the CHILD SA',
    async () => (await ha.exec('ping', ['-c', '1', '-W', '1', '10.2.0.2'], { allowFail: true })).code === 0,
    { timeoutMs: 20_000, intervalMs: 500 },
  );
  return { ha, hb, pids: [a.process.pid, b.process.pid], logs: [a.log, b.log] };
}

type Row = IpsecRow;

const median = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;

/** One pair under test: where iperf3 runs and which processes' CPU is counted. */
interface Pair {
  config: string;
  from: Netns;
  to: Netns;
  pids: number[];
  rates: number[];
  cpuPerGb: number[];
  retransmits: number[];
  /** The largest peak RSS of the pair's processes seen after a run, bytes. */
  peakRss: number;
}

/**
 * One iperf3 single-stream TCP run from `from` to 10.2.0.2 in `to` (with `reverse`, `to` sends to `from`),
 * with the CPU seconds of the pair's processes per GB carried.
 */
async function measureOnce(pair: Pair, seconds: number, reverse: boolean): Promise<void> {
  const before = cpuSnapshot(pair.pids);
  const result = await iperf3(pair.from, pair.to, '10.2.0.2', { seconds, reverse });
  const cpu = cpuSecondsBetween(before, cpuSnapshot(pair.pids));
  pair.rates.push(result.bitsPerSecond / 1e6);
  pair.cpuPerGb.push(cpu / (result.receivedBytes / 1e9));
  pair.retransmits.push(result.retransmits);
  // Read while the processes live (the labs are torn down before the rows are made).
  for (const p of pair.pids) pair.peakRss = Math.max(pair.peakRss, memoryOf(p)?.peakRss ?? 0);
}

function rowOf(pair: Pair): Row {
  const peak = pair.peakRss / (1 << 20);
  return {
    config: pair.config,
    mbps: median(pair.rates),
    cpuSecondsPerGb: median(pair.cpuPerGb),
    peakRssMiB: peak,
    runsMbps: pair.rates,
    runsRetransmits: pair.retransmits,
  };
}

interface HostEvent {
  ev: string;
  id?: number;
  sites?: SiteStatus[];
}

/**
 * Weft's IPsec gateway (test/interop/ipsec-gateway-host.ts: IKEv2 and ESP joined) on gwA initiating to one
 * charon on gwB, the hosts behind them as in strongswanTopology.
 */
export async function weftStrongswanTopology(lab: Lab, n: number) {
  const { a: gwA, b: gwB, a4, b4 } = await linkedPair(lab, 'gwa', 'gwb', n);
  const ha = await lab.netns('ha');
  const hb = await lab.netns('hb');
  await lab.veth(ha, gwA, { aAddr: '10.1.0.2/24', bAddr: '10.1.0.1/24' });
  await lab.veth(hb, gwB, { aAddr: '10.2.0.2/24', bAddr: '10.2.0.1/24' });
  await ha.exec('ip', ['route', 'add', 'default', 'via', '10.1.0.1']);
  await hb.exec('ip', ['route', 'add', 'default', 'via', '10.2.0.1']);
  for (const gw of [gwA, gwB]) await gw.sysctl('net.ipv4.ip_forward', 1);
  const psk = 'weft-bench-preshared-key-0123456789';
  const charon = await startStrongswan(lab, gwB, {
    dir: lab.file('charon-ws'),
    swanctl: swanctlConf([
      {
        name: 'weft',
        localAddrs: b4,
        remoteAddrs: a4,
        proposals: 'aes256gcm16-prfsha256-x25519',
        localId: 'b.weft.test',
        remoteId: 'a.weft.test',
        psk,
        children: [
          {
            name: 'net',
            localTs: '10.2.0.0/24',
            remoteTs: '10.1.0.0/24',
            esp: 'aes256gcm16',
            startAction: 'none',
          },
        ],
      },
    ]),
  });
  await charon.swanctl(['--load-all']);
  const site: SiteSpec = {
    name: 'b',
    enabled: true,
    remoteAddress: b4,
    localId: { type: 'fqdn', value: 'a.weft.test' },
    remoteId: { type: 'fqdn', value: 'b.weft.test' },
    psk,
    forceShortPsk: false,
    localSubnets: ['10.1.0.0/24'],
    remoteSubnets: ['10.2.0.0/24'],
    mode: 'tunnel',
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    allowLegacyGroups: false,
    ikeLifetimeSec: 14_400,
    childLifetimeSec: 3_600,
    dpdIntervalSec: 30,
    dpdAction: 'restart',
    startAction: 'initiate',
    groups: [],
  };
  const tun = lab.ifname('ips');
  const config: IpsecGatewayHostConfig = { tun, mtu: 1400, sites: [site] };
  const host = new JsonLinesProcess<HostEvent>(
    gwA.spawn(process.execPath, [IPSEC_HOST, JSON.stringify(config)]),
  );
  await host.waitFor('ready', (e) => e.ev === 'ready', 15_000);
  await gwA.exec('ip', ['link', 'set', tun, 'up']);
  await gwA.exec('ip', ['route', 'add', '10.2.0.0/24', 'dev', tun]);
  let id = 0;
  await waitFor(
    'the site up',
    async () => {
      const mine = ++id;
      host.command({ op: 'status', id: mine });
      const st = await host.waitFor('status', (e) => e.ev === 'status' && e.id === mine, 5_000);
      return st.sites?.[0]?.state === 'up';
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  return { ha, hb, pids: [host.process.pid, charon.process.pid], charon };
}

/** The pairs of the section, by the names `--only` takes. */
export const IPSEC_PAIRS = ['udp', 'raw', 'swan', 'wsw'] as const;
export type IpsecPairName = (typeof IPSEC_PAIRS)[number];

export interface IpsecSectionOptions {
  /** The pairs to measure (default all): Weft ↔ Weft over UDP 4500 and raw ESP, strongSwan ↔ strongSwan, Weft ↔ strongSwan. */
  only?: readonly IpsecPairName[];
  /** Measure the other direction: the host behind the second gateway sends (iperf3 -R). */
  reverse?: boolean;
}

/**
 * The IPsec section of `npm run bench` (and of this script run alone): the rows, their ratios to strongSwan ↔
 * strongSwan, and the table as text. Every pair is set up first, then the runs go round the pairs (one run
 * of each pair, then the next round), so that a change in the machine's load falls on all pairs alike.
 */
export async function ipsecSection(
  seconds: number,
  runs: number,
  options: IpsecSectionOptions = {},
): Promise<IpsecResult> {
  const only = new Set(options.only ?? IPSEC_PAIRS);
  const reverse = options.reverse === true;
  const failures: string[] = [];
  const labs: Lab[] = [];
  const stops: (() => Promise<void>)[] = [];
  const pairs: Pair[] = [];
  const pair = (config: string, from: Netns, to: Netns, pids: number[]): void =>
    void pairs.push({ config, from, to, pids, rates: [], cpuPerGb: [], retransmits: [], peakRss: 0 });
  try {
    for (const [i, carrier] of (['udp', 'raw'] as const).entries()) {
      if (!only.has(carrier)) continue;
      const lab = await Lab.create('bench-esp', { tools: ['ip', 'iperf3'] });
      labs.push(lab);
      const t = await espTopology(lab, carrier, 'tunnel', 80 + i);
      pair(`Weft ↔ Weft ESP aes256gcm16, ${carrier === 'udp' ? 'UDP 4500' : 'raw ESP'}`, t.ha, t.hb, [
        t.hostA.process.pid,
        t.hostB.process.pid,
      ]);
    }
    if (only.has('swan')) {
      const lab = await Lab.create('bench-swan', { tools: ['ip', 'iperf3', 'unshare', 'nsenter'] });
      labs.push(lab);
      try {
        const t = await strongswanTopology(lab, 82);
        pair('strongSwan ↔ strongSwan aes256gcm16, kernel-libipsec', t.ha, t.hb, t.pids);
      } catch (error) {
        failures.push(`strongSwan ↔ strongSwan: ${(error as Error).message.replace(/\s+/g, ' ')}`);
      }
    }
    if (only.has('wsw')) {
      const lab = await Lab.create('bench-wsw', { tools: ['ip', 'iperf3', 'unshare', 'nsenter'] });
      labs.push(lab);
      try {
        const t = await weftStrongswanTopology(lab, 83);
        stops.push(() => t.charon.stop());
        pair('Weft ↔ strongSwan IPsec (IKEv2 + ESP aes256gcm16, UDP 4500)', t.ha, t.hb, t.pids);
      } catch (error) {
        failures.push(`Weft ↔ strongSwan: ${(error as Error).message.replace(/\s+/g, ' ')}`);
      }
    }
    for (let r = 0; r < runs; r++) {
      for (const p of pairs) {
        try {
          await measureOnce(p, seconds, reverse);
        } catch (error) {
          failures.push(`${p.config}, run ${r + 1}: ${(error as Error).message.replace(/\s+/g, ' ')}`);
        }
      }
    }
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
    for (const lab of labs.reverse()) await lab.cleanup();
  }
  const rows = pairs.filter((p) => p.rates.length > 0).map(rowOf);
  const swan = rows.find((r) => r.config.startsWith('strongSwan'));
  const ratio = (r: Row): string => (swan && swan.mbps > 0 ? `${(r.mbps / swan.mbps).toFixed(2)}x` : '-');
  const lines = rows.map(
    (r) =>
      `| ${r.config} | ${r.mbps.toFixed(0).padStart(6)} Mbit/s | ${ratio(r)} | ${r.cpuSecondsPerGb.toFixed(2)} CPU s/GB | ` +
      `${r.peakRssMiB.toFixed(0)} MiB | ${r.runsMbps.map((x) => x.toFixed(0)).join(', ')} | ` +
      `${(r.runsRetransmits ?? []).join(', ')} |`,
  );
  const weftWeft = rows.find((r) => r.config.includes('Weft ↔ Weft') && r.config.includes('UDP'));
  const weftSwan = rows.find((r) => r.config.startsWith('Weft ↔ strongSwan'));
  const bars = [
    weftWeft && swan
      ? `Weft ↔ Weft (UDP 4500) / strongSwan ↔ strongSwan: ${ratio(weftWeft)} (the bar is 2x)`
      : null,
    weftSwan && swan
      ? `Weft ↔ strongSwan / strongSwan ↔ strongSwan: ${ratio(weftSwan)} (the bar is 1.3x)`
      : null,
  ].filter((x) => x !== null);
  const text =
    `IPsec, single-stream TCP${reverse ? ' (reverse: the second gateway seals)' : ''}, iperf3 ${seconds} s x ${runs} (median)\n` +
    '| configuration | throughput | vs strongSwan | CPU (both ends) | peak RSS (larger end) | runs (Mbit/s) | retransmits |\n' +
    `|---|---|---|---|---|---|---|\n${lines.join('\n')}\n\n${[...bars, ...failures.map((f) => `failed: ${f}`)].join('\n')}`;
  return { ok: failures.length === 0, seconds, runs, rows, failures, text };
}

async function main(): Promise<void> {
  const seconds = arg('--seconds', 10);
  const runs = arg('--runs', 3);
  const onlyAt = process.argv.indexOf('--only');
  const only = process.argv.includes('--swan-only')
    ? (['swan'] as const)
    : onlyAt >= 0
      ? (process.argv[onlyAt + 1] ?? '').split(',').map((name) => {
          if (!(IPSEC_PAIRS as readonly string[]).includes(name))
            throw new Error(`--only: unknown pair "${name}" (one or more of ${IPSEC_PAIRS.join(', ')})`);
          return name as IpsecPairName;
        })
      : IPSEC_PAIRS;
  const result = await ipsecSection(seconds, runs, { only, reverse: process.argv.includes('--reverse') });
  process.stdout.write(`${result.text}\n`);
  await fsp.mkdir(DEFAULT_OUT_DIR, { recursive: true });
  const file = path.join(DEFAULT_OUT_DIR, `esp-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await fsp.writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
  if (!result.ok) process.exitCode = 1;
}

// Run alone (`node dist/bench/esp.js`), not when bench/run.ts imports the section.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
