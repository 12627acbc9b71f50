/**
 * The printed report: a table of the measured values, the same table as ratios to wireguard-go↔wireguard-go,
 * and the bars from the issue as PASS/FAIL lines (informational: the bench never fails on speed). Also writes
 * the raw results as JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONFIGS } from './configurations.js';
import type { ConfigId } from './options.js';
import type { BenchResults, ConfigResult, FloodResult, MulticastResult, PeersResult } from './results.js';

export interface BarCheck {
  name: string;
  status: 'PASS' | 'FAIL' | 'SKIP';
  detail: string;
}

/** A headline metric: how to read it from a result, its unit, and which direction is better. */
export interface Metric {
  key: string;
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  value(r: ConfigResult): number | null | undefined;
  /** Spread (min, max) when there were several runs. */
  range?(r: ConfigResult): [number, number] | undefined;
  format(v: number): string;
}

const fixed =
  (digits: number) =>
  (v: number): string =>
    v.toFixed(digits);
const significant = (v: number): string =>
  v === 0
    ? '0'
    : Math.abs(v) >= 10_000
      ? `${(v / 1000).toFixed(0)}k`
      : Math.abs(v) >= 100
        ? v.toFixed(0)
        : Math.abs(v) >= 10
          ? v.toFixed(1)
          : v.toFixed(2);
const ms = (v: number): string => (v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));

export const METRICS: Metric[] = [
  {
    key: 'tcp1',
    title: 'TCP 1 stream',
    unit: 'Mbit/s',
    better: 'higher',
    value: (r) => r.tcp1?.mbps.median,
    range: (r) => (r.tcp1 ? [r.tcp1.mbps.min, r.tcp1.mbps.max] : undefined),
    format: fixed(0),
  },
  {
    key: 'tcp4',
    title: 'TCP 4 streams',
    unit: 'Mbit/s',
    better: 'higher',
    value: (r) => r.tcp4?.mbps.median,
    range: (r) => (r.tcp4 ? [r.tcp4.mbps.min, r.tcp4.mbps.max] : undefined),
    format: fixed(0),
  },
  {
    key: 'udp',
    title: 'UDP 64 B received',
    unit: 'kpps',
    better: 'higher',
    value: (r) => (r.udp ? r.udp.pps.median / 1000 : undefined),
    range: (r) => (r.udp ? [r.udp.pps.min / 1000, r.udp.pps.max / 1000] : undefined),
    format: fixed(1),
  },
  {
    key: 'pingIdleP50',
    title: 'ping idle p50',
    unit: 'ms',
    better: 'lower',
    value: (r) => r.pingIdle?.p50Ms,
    format: ms,
  },
  {
    key: 'pingIdleP99',
    title: 'ping idle p99',
    unit: 'ms',
    better: 'lower',
    value: (r) => r.pingIdle?.p99Ms,
    format: ms,
  },
  {
    key: 'pingIdleCpu',
    title: 'tunnel CPU, idle ping',
    unit: 'ms per ping',
    better: 'lower',
    value: (r) =>
      r.pingIdle?.cpuSeconds == null || r.pingIdle.sent === 0
        ? undefined
        : (r.pingIdle.cpuSeconds * 1000) / r.pingIdle.sent,
    format: fixed(2),
  },
  {
    key: 'pingLoadP50',
    title: 'ping loaded p50',
    unit: 'ms',
    better: 'lower',
    value: (r) => r.pingLoaded?.p50Ms,
    format: ms,
  },
  {
    key: 'pingLoadP99',
    title: 'ping loaded p99',
    unit: 'ms',
    better: 'lower',
    value: (r) => r.pingLoaded?.p99Ms,
    format: ms,
  },
  {
    key: 'retr1',
    title: 'TCP retransmits, 1 stream',
    unit: 'per run',
    better: 'lower',
    value: (r) => r.tcp1?.retransmits.median,
    format: fixed(0),
  },
  {
    key: 'retr4',
    title: 'TCP retransmits, 4 streams',
    unit: 'per run',
    better: 'lower',
    value: (r) => r.tcp4?.retransmits.median,
    format: fixed(0),
  },
  {
    key: 'retrPerGB',
    title: 'TCP retransmits',
    unit: 'per GB',
    better: 'lower',
    value: (r) => r.retransmitsPerGB,
    format: significant,
  },
  {
    key: 'cpuPerGB',
    title: 'tunnel CPU',
    unit: 'CPU s per GB',
    better: 'lower',
    value: (r) => r.cpuSecondsPerGB,
    format: fixed(2),
  },
  {
    key: 'serverCpuPerGB',
    title: 'server CPU',
    unit: 'CPU s per GB',
    better: 'lower',
    value: (r) => r.serverCpuSecondsPerGB,
    format: fixed(2),
  },
  {
    key: 'rss',
    title: 'tunnel peak RSS',
    unit: 'MB',
    better: 'lower',
    value: (r) => (r.peakRssBytes == null ? r.peakRssBytes : r.peakRssBytes / 1e6),
    format: fixed(1),
  },
];

export const BASELINE_ID: ConfigId = 'wg-go';

function valid(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function table(header: string[], rows: string[][], rightAlignFrom = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i >= rightAlignFrom ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Column header for a metric, e.g. "TCP 1 stream Mbit/s". */
function heading(m: Metric): string {
  return `${m.title} (${m.unit})`;
}

export function valuesTable(results: BenchResults): string {
  const header = ['configuration', ...METRICS.map(heading)];
  const rows = results.configs.map((r) => [
    r.ok ? r.label : `${r.label} (FAILED)`,
    ...METRICS.map((m) => {
      const v = m.value(r);
      if (!valid(v)) return r.ok ? '—' : 'failed';
      const range = m.range?.(r);
      return range && results.options.runs > 1
        ? `${m.format(v)} (${m.format(range[0])}–${m.format(range[1])})`
        : m.format(v);
    }),
  ]);
  return transpose(header, rows);
}

/** value / baseline; undefined when either is missing or the baseline is zero. */
export function ratio(m: Metric, r: ConfigResult, base: ConfigResult | undefined): number | undefined {
  if (!base) return undefined;
  const v = m.value(r);
  const b = m.value(base);
  if (!valid(v) || !valid(b) || b === 0) return undefined;
  return v / b;
}

export function ratiosTable(results: BenchResults): string {
  const base = results.configs.find((c) => c.id === BASELINE_ID);
  const header = [
    'configuration',
    ...METRICS.map((m) => `${heading(m)} ${m.better === 'higher' ? '↑' : '↓'}`),
  ];
  const rows = results.configs.map((r) => [
    r.ok ? r.label : `${r.label} (FAILED)`,
    ...METRICS.map((m) => {
      const q = ratio(m, r, base);
      if (q !== undefined) return `${q.toFixed(2)}×`;
      const v = m.value(r);
      const b = base ? m.value(base) : undefined;
      if (valid(v) && b === 0) return v === 0 ? '=' : `+${m.format(v)}`; // baseline zero (e.g. no retransmits)
      return r.ok ? '—' : 'failed';
    }),
  ]);
  return transpose(header, rows);
}

/**
 * Metrics as rows and configurations as columns: with twelve metrics and five configurations, this is the
 * layout that fits a terminal.
 */
function transpose(header: string[], rows: string[][]): string {
  const tHeader = ['metric', ...rows.map((r) => r[0] ?? '')];
  const tRows = header.slice(1).map((h, i) => [h, ...rows.map((r) => r[i + 1] ?? '')]);
  return table(tHeader, tRows);
}

// ---------------------------------------------------------------------------------------------------------------
// Bars from the issue

function throughputBar(
  results: BenchResults,
  id: ConfigId,
  baseId: ConfigId,
  factor: number,
  metric: Metric,
): BarCheck {
  const r = results.configs.find((c) => c.id === id);
  const b = results.configs.find((c) => c.id === baseId);
  const name = `${CONFIGS[id].label} ${metric.title} ≥ ${factor}× ${CONFIGS[baseId].label}`;
  if (!r?.ok || !b?.ok) return { name, status: 'SKIP', detail: 'not measured (or failed)' };
  const q = ratio(metric, r, b);
  if (q === undefined) return { name, status: 'SKIP', detail: 'no data' };
  return {
    name,
    status: q >= factor ? 'PASS' : 'FAIL',
    detail: `${q.toFixed(2)}× (${metric.format(metric.value(r) ?? 0)} vs ${metric.format(metric.value(b) ?? 0)} ${metric.unit})`,
  };
}

function noWorseBar(results: BenchResults, id: ConfigId, metric: Metric): BarCheck {
  const r = results.configs.find((c) => c.id === id);
  const b = results.configs.find((c) => c.id === BASELINE_ID);
  const name = `${CONFIGS[id].label} ${metric.title} no worse than ${CONFIGS[BASELINE_ID].label}'s`;
  if (!r?.ok || !b?.ok) return { name, status: 'SKIP', detail: 'not measured (or failed)' };
  const v = metric.value(r);
  const w = metric.value(b);
  if (!valid(v) || !valid(w)) return { name, status: 'SKIP', detail: 'no data' };
  return {
    name,
    status: v <= w ? 'PASS' : 'FAIL',
    detail: `${metric.format(v)} vs ${metric.format(w)} ${metric.unit}`,
  };
}

/** `id`'s value of a lower-is-better metric is at most `factor` × `baseId`'s. */
function atMostBar(
  results: BenchResults,
  id: ConfigId,
  baseId: ConfigId,
  factor: number,
  metric: Metric,
): BarCheck {
  const r = results.configs.find((c) => c.id === id);
  const b = results.configs.find((c) => c.id === baseId);
  const name = `${CONFIGS[id].label} ${metric.title} ≤ ${factor}× ${CONFIGS[baseId].label}'s`;
  if (!r?.ok || !b?.ok) return { name, status: 'SKIP', detail: 'not measured (or failed)' };
  const v = metric.value(r);
  const w = metric.value(b);
  if (!valid(v) || !valid(w) || w === 0) return { name, status: 'SKIP', detail: 'no data' };
  return {
    name,
    status: v <= factor * w ? 'PASS' : 'FAIL',
    detail: `${(v / w).toFixed(2)}× (${metric.format(v)} vs ${metric.format(w)} ${metric.unit})`,
  };
}

function peersBars(peers: PeersResult | undefined): BarCheck[] {
  const rssName = `1,000 peers: Weft RSS < ${(peers?.limits.rssBytes ?? 150e6) / 1e6} MB`;
  const timeName = `1,000 peers: added over the UAPI in < ${peers?.limits.addSeconds ?? 2} s`;
  if (!peers) {
    return [
      { name: rssName, status: 'SKIP', detail: 'not measured' },
      { name: timeName, status: 'SKIP', detail: 'not measured' },
    ];
  }
  if (!peers.ok && peers.listedPeers !== peers.peers) {
    const detail = peers.error ?? 'failed';
    return [
      { name: rssName, status: 'FAIL', detail },
      { name: timeName, status: 'FAIL', detail },
    ];
  }
  return [
    {
      name: rssName,
      status: peers.peakRss < peers.limits.rssBytes ? 'PASS' : 'FAIL',
      detail: `peak ${(peers.peakRss / 1e6).toFixed(1)} MB, now ${(peers.rssAfter / 1e6).toFixed(1)} MB (before the peers: ${(peers.rssBefore / 1e6).toFixed(1)} MB)`,
    },
    {
      name: timeName,
      status: peers.addSeconds < peers.limits.addSeconds ? 'PASS' : 'FAIL',
      detail: `${peers.addSeconds.toFixed(3)} s for one \`wg addconf\` of ${peers.peers} peers`,
    },
  ];
}

function floodBars(flood: FloodResult | undefined): BarCheck[] {
  if (!flood) return [];
  const names = {
    loss: `flood: member ping loss < ${flood.limits.pingLossPercent}%`,
    tcp: `flood: member TCP ≥ ${flood.limits.throughputRatio * 100}% of the same run's without a flood`,
    rss: `flood: gateway peak RSS < ${flood.limits.rssBytes / 1e6} MB`,
  };
  const { baseline, flood: during } = flood;
  if (!flood.ok || !baseline || !during || flood.peakRss === undefined) {
    const detail = `not measured${flood.error ? `: ${flood.error}` : ''}`;
    return Object.values(names).map((name) => ({ name, status: 'FAIL' as const, detail }));
  }
  const ratio = baseline.tcpMbps > 0 ? during.tcpMbps / baseline.tcpMbps : 0;
  const mb = (b: number | undefined): string => `${((b ?? 0) / 1e6).toFixed(1)} MB`;
  return [
    {
      name: names.loss,
      status: during.ping.lossPercent < flood.limits.pingLossPercent ? 'PASS' : 'FAIL',
      detail:
        `${during.ping.lossPercent.toFixed(1)}% (${during.ping.received}/${during.ping.sent}, max ` +
        `${during.ping.maxMs.toFixed(1)} ms; without the flood ${baseline.ping.lossPercent.toFixed(1)}%)`,
    },
    {
      name: names.tcp,
      status: ratio >= flood.limits.throughputRatio ? 'PASS' : 'FAIL',
      detail: `${(ratio * 100).toFixed(0)}% (${during.tcpMbps.toFixed(0)} vs ${baseline.tcpMbps.toFixed(0)} Mbit/s)`,
    },
    {
      name: names.rss,
      status: flood.peakRss < flood.limits.rssBytes ? 'PASS' : 'FAIL',
      detail:
        `VmHWM ${mb(flood.peakRss)}; RSS ${mb(flood.rssBefore)} before, ${mb(flood.rssPeakDuringFlood)} ` +
        `at most during, ${mb(flood.rssAfter)} after`,
    },
  ];
}

function multicastBars(m: MulticastResult | undefined): BarCheck[] {
  if (!m) return [];
  const name = `multicast: copies/s ≥ ${m.barRatio * 100}% of the gateway's unicast packets/s (${m.packetBytes} bytes)`;
  if (!m.multicast || !m.unicast)
    return [{ name, status: 'SKIP', detail: `not measured${m.error ? `: ${m.error}` : ''}` }];
  const ratio = m.multicast.copiesPerSecond / m.unicast.packetsPerSecond;
  return [
    {
      name,
      status: ratio >= m.barRatio ? 'PASS' : 'FAIL',
      detail:
        `${Math.round(m.multicast.copiesPerSecond)} copies/s (${Math.round(m.multicast.packetsPerSecond)} packets/s ` +
        `× ${m.receivers}) vs ${Math.round(m.unicast.packetsPerSecond)} unicast packets/s: ${(ratio * 100).toFixed(0)}%`,
    },
  ];
}

export function barChecks(results: BenchResults): BarCheck[] {
  const metric = (key: string): Metric => METRICS.find((m) => m.key === key) as Metric;
  const tcp1 = metric('tcp1');
  const tcp4 = metric('tcp4');
  return [
    throughputBar(results, 'weft', 'wg-go', 1.5, tcp1),
    throughputBar(results, 'weft', 'wg-go', 1.5, tcp4),
    throughputBar(results, 'weft', 'openvpn', 1.2, tcp1),
    throughputBar(results, 'weft', 'openvpn', 1.2, tcp4),
    throughputBar(results, 'weft-wg-go', 'wg-go', 1.2, tcp1),
    throughputBar(results, 'weft-wg-go', 'wg-go', 1.2, tcp4),
    noWorseBar(results, 'weft', metric('pingIdleP50')),
    noWorseBar(results, 'weft-wg-go', metric('pingIdleP50')),
    noWorseBar(results, 'weft', metric('retrPerGB')),
    noWorseBar(results, 'weft-wg-go', metric('retrPerGB')),
    throughputBar(results, 'weft-ovpn', 'ovpn-server', 1.0, tcp1),
    atMostBar(results, 'weft-ovpn', 'ovpn-server', 0.7, metric('serverCpuPerGB')),
    atMostBar(results, 'weft-ovpn', 'ovpn-server', 1.0, metric('pingIdleP50')),
    ...peersBars(results.peers),
    ...floodBars(results.flood),
    ...multicastBars(results.multicast),
  ];
}

export function barLines(checks: readonly BarCheck[]): string {
  return checks.map((c) => `${c.status.padEnd(4)}  ${c.name}: ${c.detail}`).join('\n');
}

/** The whole printed report. */
export function formatReport(results: BenchResults, checks: readonly BarCheck[]): string {
  const o = results.options;
  const base = results.configs.find((c) => c.id === BASELINE_ID);
  const parts = [
    `Weft bench — ${results.startedAt} — ${results.host.cpus} × ${results.host.cpuModel}, kernel ${results.host.kernel}`,
    `TCP${o.reverse === true ? ' from the server side to the client (--reverse: a download)' : ' from the client to the server side'}: ` +
      `${o.runs} run(s) × ${o.tcpSeconds} s per stream count (median, (min–max) over runs); UDP: ${o.runs} × ${o.udpSeconds} s, ` +
      `64-byte payloads, unlimited rate; ping every ${o.pingIntervalS * 1000} ms: ${o.idlePings} idle, ` +
      `and during ${o.loadedPingSeconds} s of TCP×1. CPU and RSS: the tunnel processes of both ends ` +
      `(CPU per GB: over all TCP runs; per ping: over the idle pings; RSS: the larger VmHWM of the two).`,
    '',
  ];
  if (results.configs.length > 0) parts.push('Measured values', valuesTable(results), '');
  if (results.configs.length === 0) {
    // Only sections (peers, flood, IPsec, multicast) were run: no configuration table.
  } else if (base) {
    parts.push(`Ratios to ${base.label} (1.00× = same; ↑/↓: which way is better)`, ratiosTable(results), '');
  } else {
    parts.push(`(no ratios: the baseline ${BASELINE_ID} was not measured)`, '');
  }
  const failed = results.configs.filter((c) => !c.ok);
  for (const f of failed) parts.push(`FAILED ${f.label}: ${f.error ?? 'unknown error'}`);
  if (failed.length > 0) parts.push('');
  if (results.peers) {
    const p = results.peers;
    parts.push(
      `1,000 peers: ${p.listedPeers}/${p.peers} listed, added in ${p.addSeconds.toFixed(3)} s; Weft RSS ` +
        `${(p.rssBefore / 1e6).toFixed(1)} MB before, ${(p.rssAfter / 1e6).toFixed(1)} MB after, peak ${(p.peakRss / 1e6).toFixed(1)} MB` +
        (p.error ? ` (${p.error})` : ''),
      '',
    );
  }
  if (results.flood) {
    const f = results.flood;
    const rate = f.flooder ? `${(f.flooder.perSecond / 1000).toFixed(0)}k initiations/s` : '?';
    parts.push(
      `Flood: ${f.gateway} gateway, ${f.member} member; flooder ${rate}, gateway CPU ` +
        `${f.gatewayCpuPercent?.toFixed(0) ?? '?'}%, UDP receive-buffer drops ${f.udpRcvbufErrors ?? '?'}` +
        (f.error ? ` (${f.error})` : ''),
      '',
    );
  }
  parts.push('Bars from the issue (informational):', barLines(checks));
  return parts.join('\n');
}

/** Writes `<stamp>.json` and `latest.json`; returns their paths. */
export function writeJson(dir: string, stamp: string, data: unknown): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify(data, null, 2)}\n`;
  const files = [path.join(dir, `${stamp}.json`), path.join(dir, 'latest.json')];
  for (const f of files) fs.writeFileSync(f, text);
  return files;
}
