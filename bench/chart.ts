/**
 * The chart: an SVG written by hand (no dependencies). One panel per headline metric, each with its own axis,
 * holding one bar per configuration (same colour for a configuration in every panel, legend at the top); the
 * number above each bar is the value and its ratio to wireguard-go↔wireguard-go, whose value is also drawn
 * as a dashed line across the panel. Throughput panels show the spread over runs as whiskers (min–max). The
 * plaintext ceiling is usually far above every tunnel: its bar is cut (zigzag) so the tunnels stay readable.
 * The bar checks from the issue are listed at the bottom.
 */
import type { BarCheck, Metric } from './report.js';
import { BASELINE_ID, METRICS, ratio } from './report.js';
import type { BenchResults, ConfigResult } from './results.js';

const COLORS: Record<string, string> = {
  plain: '#a0a0a0',
  'wg-go': '#4e79a7',
  openvpn: '#f28e2b',
  weft: '#2e9e52',
  'weft-wg-go': '#8cd17d',
  'ovpn-server': '#b6992d',
  'weft-ovpn': '#1b5e20',
};
const SHORT: Record<string, string> = {
  plain: 'plaintext',
  'wg-go': 'wg-go',
  openvpn: 'OpenVPN',
  weft: 'Weft',
  'weft-wg-go': 'Weft↔wg-go',
};

/** The panels, in order. */
const CHART_METRICS = [
  'tcp1',
  'tcp4',
  'udp',
  'pingIdleP50',
  'pingLoadP50',
  'pingLoadP99',
  'retrPerGB',
  'cpuPerGB',
  'rss',
];

const WIDTH = 1500;
const COLS = 3;
const MARGIN = 30;
const PANEL_H = 330;
const PANEL_GAP_X = 30;
const PANEL_GAP_Y = 26;
const HEADER_H = 150;
const LINE_H = 20;
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function text(
  x: number,
  y: number,
  content: string,
  attrs: {
    size?: number;
    anchor?: 'start' | 'middle' | 'end';
    weight?: string;
    fill?: string;
    family?: string;
    /** A white outline under the glyphs, so the text stays legible over lines. */
    halo?: boolean;
  } = {},
): string {
  const a = [
    `x="${num(x)}"`,
    `y="${num(y)}"`,
    `font-size="${attrs.size ?? 13}"`,
    `text-anchor="${attrs.anchor ?? 'start'}"`,
    `fill="${attrs.fill ?? '#222'}"`,
  ];
  if (attrs.weight) a.push(`font-weight="${attrs.weight}"`);
  if (attrs.family) a.push(`font-family="${attrs.family}"`);
  if (attrs.halo) a.push('stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"');
  return `<text ${a.join(' ')}>${esc(content)}</text>`;
}

/** Round tick step (1, 2, 2.5 or 5 × 10^k) for about `count` ticks up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= raw) return m * magnitude;
  return 10 * magnitude;
}

function tickLabel(v: number, step: number): string {
  if (step >= 1000 && step % 1000 === 0) return v === 0 ? '0' : `${v / 1000}k`;
  let decimals = 0;
  while (decimals < 4 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6)
    decimals++;
  return v.toFixed(decimals);
}

function panel(x0: number, y0: number, w: number, h: number, metric: Metric, results: BenchResults): string {
  const out: string[] = [];
  const configs = results.configs;
  const base = configs.find((c) => c.id === BASELINE_ID);
  out.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" rx="6" fill="#ffffff" stroke="#d8d8d8"/>`);
  const direction = metric.better === 'higher' ? 'higher is better ↑' : 'lower is better ↓';
  out.push(text(x0 + 14, y0 + 24, metric.title, { size: 16, weight: 'bold' }));
  out.push(
    text(x0 + w - 14, y0 + 24, `${metric.unit} · ${direction}`, { size: 12, anchor: 'end', fill: '#666' }),
  );

  const plotX = x0 + 62;
  const plotW = w - 62 - 16;
  const plotTop = y0 + 62;
  const plotBottom = y0 + h - 36;
  const plotH = plotBottom - plotTop;

  const value = (c: ConfigResult): number | undefined => {
    const v = metric.value(c);
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  };
  const top = (c: ConfigResult): number | undefined => {
    const v = value(c);
    if (v === undefined) return undefined;
    const range = results.options.runs > 1 ? metric.range?.(c) : undefined;
    return range ? Math.max(v, range[1]) : v;
  };
  const tunnelTops = configs
    .filter((c) => c.id !== 'plain')
    .map(top)
    .filter((v): v is number => v !== undefined);
  const allTops = configs.map(top).filter((v): v is number => v !== undefined);
  const tunnelMax = tunnelTops.length > 0 ? Math.max(...tunnelTops) : 0;
  const allMax = allTops.length > 0 ? Math.max(...allTops) : 0;
  // Cut the ceiling's bar when it would squash the tunnels' bars.
  const cut = tunnelMax > 0 && allMax > 1.8 * tunnelMax;
  let axisMax = (cut ? tunnelMax : allMax) * 1.22;
  if (!(axisMax > 0)) axisMax = 1;
  const step = niceStep(axisMax, 5);
  axisMax = Math.ceil(axisMax / step - 1e-9) * step;
  const yOf = (v: number): number => plotBottom - (Math.min(v, axisMax) / axisMax) * plotH;

  for (let t = 0; t <= axisMax + step / 1000; t += step) {
    const y = yOf(t);
    out.push(
      `<line x1="${plotX}" y1="${num(y)}" x2="${plotX + plotW}" y2="${num(y)}" stroke="${t === 0 ? '#888' : '#ececec'}"/>`,
    );
    out.push(text(plotX - 6, y + 4, tickLabel(t, step), { size: 11, anchor: 'end', fill: '#666' }));
  }

  const baseValue = base ? value(base) : undefined;
  const slot = plotW / Math.max(1, configs.length);
  const barW = Math.min(64, slot * 0.62);
  const labels: string[] = []; // drawn last, over bars and the baseline line
  const halo = { halo: true };
  configs.forEach((c, i) => {
    const cx = plotX + slot * (i + 0.5);
    const color = COLORS[c.id] ?? '#777';
    labels.push(
      text(cx, plotBottom + 18, SHORT[c.id] ?? c.label, { size: 12, anchor: 'middle', fill: '#333' }),
    );
    const v = value(c);
    if (v === undefined) {
      labels.push(
        c.ok
          ? text(cx, plotBottom - 8, 'n/a', { size: 12, anchor: 'middle', fill: '#999' })
          : text(cx, plotBottom - 8, 'failed', {
              size: 12,
              anchor: 'middle',
              fill: '#c0392b',
              weight: 'bold',
            }),
      );
      return;
    }
    const y = yOf(v);
    out.push(
      `<rect x="${num(cx - barW / 2)}" y="${num(y)}" width="${num(barW)}" height="${num(Math.max(0, plotBottom - y))}" fill="${color}"/>`,
    );
    let labelTop = y;
    const clipped = v > axisMax;
    if (clipped) {
      // Zigzag break near the top of the cut bar.
      const zy = plotTop + 14;
      const zx = cx - barW / 2 - 3;
      const zw = barW + 6;
      const pts = [0, 1, 2, 3, 4, 5, 6].map(
        (k) => `${num(zx + (zw * k) / 6)},${num(zy + (k % 2 === 0 ? -4 : 4))}`,
      );
      out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="#fff" stroke-width="5"/>`);
      out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="#555" stroke-width="1.2"/>`);
    }
    const range = results.options.runs > 1 ? metric.range?.(c) : undefined;
    if (range && !clipped) {
      const yLo = yOf(range[0]);
      const yHi = yOf(range[1]);
      out.push(
        `<path d="M${num(cx)},${num(yLo)}V${num(yHi)}M${num(cx - 7)},${num(yHi)}H${num(cx + 7)}M${num(cx - 7)},${num(yLo)}H${num(cx + 7)}" stroke="#222" stroke-width="1.3" fill="none"/>`,
      );
      labelTop = Math.min(labelTop, yHi);
    }
    const q = ratio(metric, c, base);
    const valueText = `${metric.format(v)}${c.ok ? '' : ' (failed)'}`;
    if (clipped) {
      labels.push(
        text(cx, plotTop - 8, `${valueText} ↑`, { size: 12, anchor: 'middle', weight: 'bold', ...halo }),
      );
    } else {
      const ratioText = c.id === BASELINE_ID || q === undefined ? '' : `${q.toFixed(2)}×`;
      labels.push(
        text(cx, labelTop - (ratioText ? 20 : 6), valueText, {
          size: 12,
          anchor: 'middle',
          weight: 'bold',
          ...halo,
        }),
      );
      if (ratioText) {
        labels.push(text(cx, labelTop - 6, ratioText, { size: 11, anchor: 'middle', fill: '#555', ...halo }));
      }
    }
  });

  if (baseValue !== undefined && baseValue <= axisMax) {
    const y = yOf(baseValue);
    out.push(
      `<line x1="${plotX}" y1="${num(y)}" x2="${plotX + plotW}" y2="${num(y)}" stroke="${COLORS[BASELINE_ID]}" stroke-width="1.4" stroke-dasharray="6 4"/>`,
    );
  }
  out.push(...labels);
  return out.join('\n');
}

/** The whole SVG document. */
export function renderChart(results: BenchResults, checks: readonly BarCheck[]): string {
  const metrics = CHART_METRICS.map((k) => METRICS.find((m) => m.key === k)).filter((m): m is Metric => !!m);
  const rows = Math.ceil(metrics.length / COLS);
  const panelW = (WIDTH - 2 * MARGIN - (COLS - 1) * PANEL_GAP_X) / COLS;
  const panelsBottom = HEADER_H + rows * PANEL_H + (rows - 1) * PANEL_GAP_Y;
  const checksTop = panelsBottom + 40;
  const height = checksTop + 34 + checks.length * LINE_H + 30;
  const o = results.options;
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${FONT}">`,
    `<title>Weft bench ${esc(results.startedAt)}</title>`,
    `<rect width="100%" height="100%" fill="#f6f6f4"/>`,
    text(MARGIN, 40, 'Weft vs wireguard-go vs OpenVPN — two namespaces joined by a veth pair', {
      size: 24,
      weight: 'bold',
    }),
    text(
      MARGIN,
      66,
      `${results.startedAt} · ${results.host.cpus} × ${results.host.cpuModel} · kernel ${results.host.kernel} · node ${results.host.node}` +
        (o.quick ? ' · QUICK MODE (smoke numbers)' : ''),
      { size: 13, fill: '#555' },
    ),
    text(
      MARGIN,
      86,
      `Bars: median of ${o.runs} run(s) (TCP ${o.tcpSeconds} s, UDP ${o.udpSeconds} s); whiskers: min–max over runs; ` +
        `dashed line: wg-go↔wg-go; small numbers: ratio to it. CPU and RSS: the tunnel processes (both ends).`,
      { size: 13, fill: '#555' },
    ),
  ];
  // Legend.
  let lx = MARGIN;
  for (const c of results.configs) {
    const label = `${c.label}${c.ok ? '' : ' (failed)'}`;
    out.push(`<rect x="${lx}" y="${108}" width="16" height="16" rx="2" fill="${COLORS[c.id] ?? '#777'}"/>`);
    out.push(text(lx + 22, 121, label, { size: 14 }));
    lx += 22 + label.length * 8.2 + 28;
  }

  metrics.forEach((m, i) => {
    const col = i % COLS;
    const row = Math.floor(i / COLS);
    const x = MARGIN + col * (panelW + PANEL_GAP_X);
    const y = HEADER_H + row * (PANEL_H + PANEL_GAP_Y);
    out.push(panel(x, y, panelW, PANEL_H, m, results));
  });

  out.push(text(MARGIN, checksTop + 10, 'Bars from the issue (informational)', { size: 16, weight: 'bold' }));
  checks.forEach((c, i) => {
    const y = checksTop + 34 + i * LINE_H;
    const fill = c.status === 'PASS' ? '#2e7d32' : c.status === 'FAIL' ? '#c62828' : '#777';
    out.push(
      text(MARGIN, y, c.status, { size: 13, weight: 'bold', fill, family: 'DejaVu Sans Mono, monospace' }),
    );
    out.push(text(MARGIN + 56, y, `${c.name}: ${c.detail}`, { size: 13 }));
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
