/**
 * The flood section: does a member's traffic keep flowing through a Weft gateway while a third host floods the
 * gateway with handshake initiations that pass mac1?
 *
 *   namespace "<prefix>-cli"  ——veth——  namespace "<prefix>-srv"  ——veth——  namespace "<prefix>-fld"
 *   wireguard-go (the member)           Weft (the gateway)                  the flooder (bench/flooder.ts)
 *   10.99.0.2                           10.99.0.1 / 10.98.0.1               10.98.0.2
 *
 * 1. Bring up Weft (server) ↔ wireguard-go (client), the bench's weft-wg-go configuration.
 * 2. Without a flood: ping through the tunnel (every 10 ms), then one iperf3 TCP stream.
 * 3. Start the flooder (one process, one socket: it takes a core of its own), let it run for a second, then the
 *    same ping and TCP run while it floods; meanwhile the gateway's RSS is sampled.
 * 4. Read the flooder's count, the gateway's CPU time and peak RSS (VmHWM), and the server namespace's UDP
 *    receive-buffer drops (the socket that flood and member share overflowing).
 * Bars: ping loss during the flood < 5%; TCP during the flood ≥ 50% of the same run's TCP without it; the
 * gateway's peak RSS < 150 MB.
 */
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { bringUp, type Tunnel } from './configurations.js';
import { ping, tcpRun } from './measure.js';
import { cpuSecondsBetween, cpuSnapshot, memoryOf } from './procstat.js';
import type { FloodPhase, FloodResult } from './results.js';
import type { Rig } from './rig.js';
import type { Netns } from '../test/interop/harness.js';

const FLOODER = fileURLToPath(new URL('./flooder.js', import.meta.url));
const FLOOD_NET = { gateway: '10.98.0.1', flooder: '10.98.0.2', bits: 24 } as const;
const PING_INTERVAL_S = 0.01;
/** The flooder runs this long before the measurements start (its set-up, and the gateway settling in). */
const RAMP_S = 1;

export const FLOOD_LIMITS = { pingLossPercent: 5, throughputRatio: 0.5, rssBytes: 150e6 } as const;

export interface FloodOptions {
  pings: number;
  tcpSeconds: number;
}

/** UDP receive errors and receive-buffer drops in a namespace (IPv4 and IPv6 MIBs together). */
async function udpDrops(ns: Netns): Promise<{ rcvbuf: number; inErrors: number }> {
  const snmp = (await ns.exec('cat', ['/proc/net/snmp'], { allowFail: true })).stdout;
  const lines = snmp.split('\n').filter((l) => l.startsWith('Udp: '));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const v4 = (name: string): number => Number(values[names.indexOf(name)] ?? 0) || 0;
  const snmp6 = (await ns.exec('cat', ['/proc/net/snmp6'], { allowFail: true })).stdout;
  const v6 = (name: string): number => Number(new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(snmp6)?.[1] ?? 0);
  return {
    rcvbuf: v4('RcvbufErrors') + v6('Udp6RcvbufErrors'),
    inErrors: v4('InErrors') + v6('Udp6InErrors'),
  };
}

async function phase(
  rig: Rig,
  tunnel: Tunnel,
  o: FloodOptions,
  log: (l: string) => void,
): Promise<FloodPhase> {
  const pinged = await ping(rig, tunnel, o.pings, PING_INTERVAL_S);
  const lossPercent = (100 * (pinged.sent - pinged.received)) / pinged.sent;
  log(
    `    ping: ${pinged.received}/${pinged.sent} replies (${lossPercent.toFixed(1)}% lost), ` +
      `p50 ${pinged.p50Ms.toFixed(3)} ms, max ${pinged.maxMs.toFixed(1)} ms`,
  );
  const tcp = await tcpRun(rig, tunnel, 1, o.tcpSeconds);
  log(`    TCP 1 stream: ${tcp.mbps.toFixed(0)} Mbit/s`);
  return { ping: { ...pinged, lossPercent }, tcpMbps: tcp.mbps };
}

export async function floodSection(
  rig: Rig,
  o: FloodOptions,
  log: (line: string) => void,
): Promise<FloodResult> {
  const flooderNs = await rig.lab.netns('fld');
  await rig.lab.veth(rig.server, flooderNs, {
    aName: 'fs',
    bName: 'ff',
    aAddr: `${FLOOD_NET.gateway}/${FLOOD_NET.bits}`,
    bAddr: `${FLOOD_NET.flooder}/${FLOOD_NET.bits}`,
  });
  const tunnel = await bringUp(rig, 'weft-wg-go');
  try {
    const gateway = tunnel.ends.find((e) => e.side === 'server');
    if (!gateway) throw new Error('no gateway end');
    const show = async (what: string): Promise<string> =>
      (await rig.server.exec('wg', ['show', gateway.ifname, what])).stdout.trim();
    const [publicKey, port] = [await show('public-key'), await show('listen-port')];

    log(`  without a flood:`);
    const baseline = await phase(rig, tunnel, o, log);

    const rssBefore = memoryOf(gateway.pid)?.rss ?? 0;
    const dropsBefore = await udpDrops(rig.server);
    const cpuBefore = cpuSnapshot([gateway.pid]);
    const floodSeconds = RAMP_S + o.pings * PING_INTERVAL_S + o.tcpSeconds + 8;
    const flooder = flooderNs.spawn(process.execPath, [
      FLOODER,
      '--to',
      `${FLOOD_NET.gateway}:${port}`,
      '--key',
      publicKey,
      '--seconds',
      String(floodSeconds),
    ]);
    let peakSampled = rssBefore;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakSampled = Math.max(peakSampled, memoryOf(gateway.pid)?.rss ?? 0);
        await delay(100);
      }
    })();
    let flood: FloodPhase;
    const started = performance.now();
    try {
      await delay(RAMP_S * 1000);
      if (!flooder.running) throw new Error(`the flooder exited early: ${flooder.describe()}`);
      log(`  during the flood (valid-mac1 initiations from ${FLOOD_NET.flooder}):`);
      flood = await phase(rig, tunnel, o, log);
    } finally {
      sampling = false;
      await sampler;
      flooder.kill('SIGINT'); // it prints its counts and exits
    }
    const floodedSeconds = (performance.now() - started) / 1000;
    await Promise.race([flooder.exited, delay(5000)]);
    await flooder.stop().catch(() => undefined);
    const cpuSeconds = cpuSecondsBetween(cpuBefore, cpuSnapshot([gateway.pid]));
    const dropsAfter = await udpDrops(rig.server);
    const mem = memoryOf(gateway.pid);
    if (!mem) throw new Error(`the gateway exited during the flood`);
    const counts = /\{.*\}/.exec(flooder.stdout)?.[0];
    if (!counts) throw new Error(`no counts from the flooder: ${flooder.describe()}`);
    const sent = JSON.parse(counts) as { sent: number; refused: number; seconds: number };
    const flooded = { ...sent, perSecond: sent.sent / sent.seconds };
    const gatewayCpuPercent = (100 * cpuSeconds) / floodedSeconds;
    const rssPeakDuringFlood = Math.max(peakSampled, mem.rss);
    const result: FloodResult = {
      ok: true,
      gateway: 'weft',
      member: 'wireguard-go',
      pings: o.pings,
      tcpSeconds: o.tcpSeconds,
      baseline,
      flood,
      flooder: flooded,
      gatewayCpuPercent,
      udpRcvbufErrors: dropsAfter.rcvbuf - dropsBefore.rcvbuf,
      udpInErrors: dropsAfter.inErrors - dropsBefore.inErrors,
      rssBefore,
      rssPeakDuringFlood,
      rssAfter: mem.rss,
      peakRss: mem.peakRss,
      limits: FLOOD_LIMITS,
    };
    log(
      `  flooder: ${(flooded.perSecond / 1000).toFixed(0)}k initiations/s for ${sent.seconds.toFixed(1)} s; ` +
        `gateway CPU ${gatewayCpuPercent.toFixed(0)}%; UDP receive-buffer drops ${result.udpRcvbufErrors}; ` +
        `gateway RSS ${(rssBefore / 1e6).toFixed(1)} MB before, ${(rssPeakDuringFlood / 1e6).toFixed(1)} MB ` +
        `peak during, ${(mem.rss / 1e6).toFixed(1)} MB after (VmHWM ${(mem.peakRss / 1e6).toFixed(1)} MB)`,
    );
    return result;
  } finally {
    await tunnel.down().catch(() => undefined);
  }
}
