/**
 * The measurements, each run from the client namespace against the tunnel's server side:
 *   - iperf3 TCP throughput, 1 and 4 streams, `runs` times (median and spread), with retransmits, and the CPU
 *     seconds the tunnel processes spent during each run;
 *   - iperf3 UDP with 64-byte payloads at an unlimited target rate (-b 0): packets per second received;
 *   - ping round trips (every 10 ms) through the idle tunnel (with the tunnel's CPU time meanwhile), and during
 *     a single-stream TCP run;
 *   - peak RSS (VmHWM) of every tunnel process, read after the measurements.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ManagedProcess } from '../test/interop/harness.js';
import type { Tunnel } from './configurations.js';
import type { BenchOptions } from './options.js';
import { commOf, cpuSecondsBetween, cpuSnapshot, memoryOf, withDescendants } from './procstat.js';
import type { Rig } from './rig.js';
import type { ConfigResult, EndResult, PingResult, Spread, TcpRun, UdpRun } from './results.js';

const UDP_PAYLOAD = 64;
let nextPort = 5201;

export function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const median =
    n === 0
      ? 0
      : n % 2 === 1
        ? (sorted[(n - 1) / 2] ?? 0)
        : ((sorted[n / 2 - 1] ?? 0) + (sorted[n / 2] ?? 0)) / 2;
  return { median, min: sorted[0] ?? 0, max: sorted[n - 1] ?? 0, values: [...values] };
}

/** Nearest-rank percentile (q in 0..1) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

// ---------------------------------------------------------------------------------------------------------------
// iperf3

interface IperfEnd {
  sum?: IperfSum;
  sum_sent?: IperfSum;
  sum_received?: IperfSum;
}

interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
}

interface IperfJson {
  error?: string;
  end?: IperfEnd;
}

/** Starts a one-off iperf3 server in the server namespace; returns it once it listens. */
async function iperfServer(rig: Rig): Promise<{ port: number; proc: ManagedProcess }> {
  const port = nextPort++;
  if (nextPort > 5299) nextPort = 5201;
  const proc = rig.server.spawn('iperf3', ['-s', '-1', '--forceflush', '-p', String(port)]);
  await proc.waitForOutput(/Server listening/, 10_000);
  return { port, proc };
}

/** Runs an iperf3 client (JSON output) against a fresh one-off server; stops the server afterwards. */
async function iperf(rig: Rig, tunnel: Tunnel, args: readonly string[], seconds: number): Promise<IperfJson> {
  const server = await iperfServer(rig);
  try {
    const result = await rig.client.exec(
      'iperf3',
      ['-c', tunnel.target, '-p', String(server.port), '-t', String(seconds), '-J', ...args],
      { timeoutMs: (seconds + 30) * 1000, allowFail: true },
    );
    let json: IperfJson;
    try {
      json = JSON.parse(result.stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 ${args.join(' ')}: no JSON (exit ${result.code}): ${result.stderr.trim()}`);
    }
    if (json.error !== undefined || result.code !== 0) {
      throw new Error(
        `iperf3 ${args.join(' ')} failed (exit ${result.code}): ${json.error ?? result.stderr.trim()}`,
      );
    }
    return json;
  } finally {
    await server.proc.stop(1000).catch(() => undefined);
  }
}

function tunnelPids(tunnel: Tunnel): number[] {
  return tunnel.ends.map((e) => e.pid);
}

function serverPids(tunnel: Tunnel): number[] {
  return tunnel.ends.filter((e) => e.side === 'server').map((e) => e.pid);
}

/** One TCP throughput run with `streams` parallel streams. */
export async function tcpRun(
  rig: Rig,
  tunnel: Tunnel,
  streams: number,
  seconds: number,
  reverse = false,
): Promise<TcpRun> {
  const before = cpuSnapshot(tunnelPids(tunnel));
  const serverBefore = cpuSnapshot(serverPids(tunnel));
  const json = await iperf(rig, tunnel, ['-P', String(streams), ...(reverse ? ['-R'] : [])], seconds);
  const after = cpuSnapshot(tunnelPids(tunnel));
  const serverAfter = cpuSnapshot(serverPids(tunnel));
  const received = json.end?.sum_received ?? {};
  const sent = json.end?.sum_sent ?? {};
  return {
    streams,
    seconds: received.seconds ?? seconds,
    mbps: (received.bits_per_second ?? 0) / 1e6,
    bytes: received.bytes ?? 0,
    retransmits: sent.retransmits ?? 0,
    cpuSeconds: tunnel.ends.length > 0 ? cpuSecondsBetween(before, after) : null,
    serverCpuSeconds: tunnel.ends.length > 0 ? cpuSecondsBetween(serverBefore, serverAfter) : null,
  };
}

/** One UDP run: 64-byte payloads as fast as iperf3 can send them; what arrived. */
export async function udpRun(rig: Rig, tunnel: Tunnel, seconds: number): Promise<UdpRun> {
  const before = cpuSnapshot(tunnelPids(tunnel));
  const json = await iperf(rig, tunnel, ['-u', '-l', String(UDP_PAYLOAD), '-b', '0'], seconds);
  const after = cpuSnapshot(tunnelPids(tunnel));
  const received = json.end?.sum_received ?? json.end?.sum ?? {};
  const sent = json.end?.sum_sent ?? {};
  const secs = received.seconds ?? seconds;
  const packets = received.packets ?? 0;
  const lost = received.lost_packets ?? 0;
  const receivedPackets = Math.max(0, packets - lost);
  return {
    seconds: secs,
    sentPackets: sent.packets ?? packets,
    receivedPackets,
    pps: secs > 0 ? receivedPackets / secs : 0,
    lossPercent: received.lost_percent ?? 0,
    cpuSeconds: tunnel.ends.length > 0 ? cpuSecondsBetween(before, after) : null,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// ping

/** `count` echo requests every `intervalS` from the client namespace; round trips in ms. */
export async function ping(rig: Rig, tunnel: Tunnel, count: number, intervalS: number): Promise<PingResult> {
  const result = await rig.client.exec(
    'ping',
    ['-n', '-c', String(count), '-i', String(intervalS), '-W', '2', tunnel.target],
    { timeoutMs: (count * intervalS + 15) * 1000, allowFail: true },
  );
  const rtts = [...result.stdout.matchAll(/ time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return summarizePing(count, rtts);
}

function summarizePing(sent: number, rtts: number[]): PingResult {
  return {
    sent,
    received: rtts.length,
    p50Ms: percentile(rtts, 0.5),
    p99Ms: percentile(rtts, 0.99),
    maxMs: rtts.length > 0 ? Math.max(...rtts) : Number.NaN,
  };
}

/** Ping during a single-stream TCP run (pings start 0.5 s in and end ~0.5 s before the load does). */
export async function loadedPing(
  rig: Rig,
  tunnel: Tunnel,
  seconds: number,
  intervalS: number,
  reverse = false,
): Promise<PingResult & { loadMbps: number }> {
  const count = Math.max(10, Math.floor((seconds - 1) / intervalS));
  const load = tcpRun(rig, tunnel, 1, seconds, reverse);
  load.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
  await delay(500);
  const pinged = await ping(rig, tunnel, count, intervalS);
  const loadRun = await load;
  return { ...pinged, loadMbps: loadRun.mbps };
}

// ---------------------------------------------------------------------------------------------------------------
// Memory

/** Peak and current RSS of every tunnel end (process plus descendants). */
export function endsMemory(tunnel: Tunnel): EndResult[] {
  return tunnel.ends.map((end) => {
    let peakRss = 0;
    let rss = 0;
    for (const pid of withDescendants([end.pid])) {
      const mem = memoryOf(pid);
      if (!mem) continue;
      peakRss += mem.peakRss;
      rss += mem.rss;
    }
    return {
      side: end.side,
      impl: end.impl,
      ifname: end.ifname,
      pid: end.pid,
      comm: commOf(end.pid),
      peakRss,
      rss,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Everything for one configuration

/**
 * Runs every measurement through an up tunnel, filling `into` as results come in (so that a failure part-way
 * keeps what was measured); `log` gets progress lines.
 */
export async function measureAll(
  rig: Rig,
  tunnel: Tunnel,
  options: BenchOptions,
  into: ConfigResult,
  log: (line: string) => void,
): Promise<void> {
  const tcp1: TcpRun[] = [];
  const tcp4: TcpRun[] = [];
  const udp: UdpRun[] = [];
  const summarize = (): void => {
    if (tcp1.length > 0) {
      into.tcp1 = {
        mbps: spread(tcp1.map((r) => r.mbps)),
        retransmits: spread(tcp1.map((r) => r.retransmits)),
        runs: tcp1,
      };
    }
    if (tcp4.length > 0) {
      into.tcp4 = {
        mbps: spread(tcp4.map((r) => r.mbps)),
        retransmits: spread(tcp4.map((r) => r.retransmits)),
        runs: tcp4,
      };
    }
    if (udp.length > 0) into.udp = { pps: spread(udp.map((r) => r.pps)), runs: udp };
    const tcpRuns = [...tcp1, ...tcp4];
    const bytes = tcpRuns.reduce((s, r) => s + r.bytes, 0);
    const cpuSeconds = tunnel.ends.length > 0 ? tcpRuns.reduce((s, r) => s + (r.cpuSeconds ?? 0), 0) : null;
    const retransmits = tcpRuns.reduce((s, r) => s + r.retransmits, 0);
    into.tcpBytes = bytes;
    into.tcpCpuSeconds = cpuSeconds;
    into.cpuSecondsPerGB = cpuSeconds === null || bytes === 0 ? null : cpuSeconds / (bytes / 1e9);
    const serverCpu =
      tunnel.ends.length > 0 ? tcpRuns.reduce((s, r) => s + (r.serverCpuSeconds ?? 0), 0) : null;
    into.serverCpuSecondsPerGB = serverCpu === null || bytes === 0 ? null : serverCpu / (bytes / 1e9);
    into.retransmitsPerGB = bytes === 0 ? null : retransmits / (bytes / 1e9);
    const ends = endsMemory(tunnel);
    into.ends = ends;
    into.peakRssBytes = ends.length > 0 ? Math.max(...ends.map((e) => e.peakRss)) : null;
  };

  try {
    if (options.warmupSeconds > 0) {
      log(`  warm-up: TCP ${options.warmupSeconds} s`);
      await tcpRun(rig, tunnel, 1, options.warmupSeconds, options.reverse);
    }

    log(`  ping, idle: ${options.idlePings} × ${options.pingIntervalS * 1000} ms`);
    const idleBefore = cpuSnapshot(tunnelPids(tunnel));
    const pinged = await ping(rig, tunnel, options.idlePings, options.pingIntervalS);
    const idleAfter = cpuSnapshot(tunnelPids(tunnel));
    const pingIdle = {
      ...pinged,
      cpuSeconds: tunnel.ends.length > 0 ? cpuSecondsBetween(idleBefore, idleAfter) : null,
    };
    into.pingIdle = pingIdle;
    log(
      `    p50 ${pingIdle.p50Ms} ms, p99 ${pingIdle.p99Ms} ms, ${pingIdle.received}/${pingIdle.sent} replies` +
        (pingIdle.cpuSeconds == null ? '' : `, tunnel CPU ${pingIdle.cpuSeconds.toFixed(2)} s`),
    );

    for (let i = 0; i < options.runs; i++) {
      const one = await tcpRun(rig, tunnel, 1, options.tcpSeconds, options.reverse);
      tcp1.push(one);
      const four = await tcpRun(rig, tunnel, 4, options.tcpSeconds, options.reverse);
      tcp4.push(four);
      const u = await udpRun(rig, tunnel, options.udpSeconds);
      udp.push(u);
      log(
        `  run ${i + 1}/${options.runs}: TCP×1 ${one.mbps.toFixed(0)} Mbit/s (${one.retransmits} retr), ` +
          `TCP×4 ${four.mbps.toFixed(0)} Mbit/s (${four.retransmits} retr), UDP ${(u.pps / 1000).toFixed(1)} kpps ` +
          `(${u.lossPercent.toFixed(1)}% lost)`,
      );
    }

    log(`  ping under load: TCP×1 for ${options.loadedPingSeconds} s`);
    const pingLoaded = await loadedPing(
      rig,
      tunnel,
      options.loadedPingSeconds,
      options.pingIntervalS,
      options.reverse,
    );
    into.pingLoaded = pingLoaded;
    log(
      `    p50 ${pingLoaded.p50Ms} ms, p99 ${pingLoaded.p99Ms} ms, ${pingLoaded.received}/${pingLoaded.sent} replies, ` +
        `load ${pingLoaded.loadMbps.toFixed(0)} Mbit/s`,
    );
  } finally {
    summarize();
  }
}
