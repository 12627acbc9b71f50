/**
 * A time-series chart drawn as SVG with DOM calls (no library, nothing the CSP would refuse):
 *   1. the figure measures its width (ResizeObserver) and draws at exactly that size, so text is never
 *      stretched the way a scaled viewBox would stretch it;
 *   2. the y axis gets "nice" ticks (1, 2, 2.5, 5 × 10^n) with labels in the caller's units, never two alike
 *      (axis.ts);
 *   3. the x axis gets clock labels on whole hours, as many as fit;
 *   4. each series is an area with a line on top; pointing at the chart shows the bucket's values in a
 *      readout line under it (no floating tooltip to position).
 */
import { yAxis } from './axis.js';
import { h, replace, s } from './dom.js';
import { formatClock, formatHour } from './format.js';

export interface ChartSeries {
  readonly label: string;
  /** A CSS class giving the series its colour ("series-in"). */
  readonly class: string;
  readonly values: readonly number[];
}

export interface TimeChartOptions {
  /** Time of values[0]'s bucket start, ms since the epoch. */
  readonly start: number;
  readonly stepMs: number;
  readonly series: readonly ChartSeries[];
  readonly formatValue: (v: number) => string;
  /** What the chart shows, for screen readers. */
  readonly description: string;
  /** Under the chart while nothing is pointed at ("Average per 15 minutes"). */
  readonly hint?: string;
  readonly height?: number;
  /** The smallest y step that means anything (1 for whole bytes); default 0. */
  readonly minStep?: number;
}

const PAD = { left: 64, right: 12, top: 12, bottom: 26 };

const HOUR = 3600 * 1000;

function draw(width: number, o: TimeChartOptions, readout: HTMLElement): SVGSVGElement {
  const height = o.height ?? 220;
  const n = Math.max(...o.series.map((x) => x.values.length), 1);
  const x0 = PAD.left;
  const x1 = Math.max(x0 + 10, width - PAD.right);
  const y0 = PAD.top;
  const y1 = height - PAD.bottom;
  const end = o.start + n * o.stepMs;
  const xAt = (t: number): number => x0 + ((t - o.start) / (end - o.start)) * (x1 - x0);
  const xOf = (i: number): number => xAt(o.start + (i + 0.5) * o.stepMs);

  const max = Math.max(0, ...o.series.flatMap((x) => x.values));
  const axis = yAxis(max, o.formatValue, 4, o.minStep ?? 0);
  const top = axis.top;
  const yOf = (v: number): number => y1 - (v / top) * (y1 - y0);

  const svg = s('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart-svg',
    role: 'img',
    'aria-label': o.description,
  });

  // y axis: grid lines and labels
  axis.ticks.forEach((v, i) => {
    const y = yOf(v);
    svg.append(
      s('line', { x1: x0, x2: x1, y1: y, y2: y, class: v === 0 ? 'axis' : 'grid' }),
      s('text', { x: x0 - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, axis.labels[i] ?? ''),
    );
  });

  // x axis: whole local hours, every `every` hours so labels stay ~50px apart
  const hourPx = ((x1 - x0) * HOUR) / (end - o.start);
  const every = [1, 2, 3, 4, 6, 12, 24].find((k) => k * hourPx >= 50) ?? 24;
  const first = new Date(o.start);
  first.setMinutes(0, 0, 0);
  for (let t = first.getTime() + HOUR; t < end; t += HOUR) {
    if (new Date(t).getHours() % every !== 0) continue;
    const x = xAt(t);
    if (x < x0 + 16 || x > x1 - 16) continue;
    svg.append(
      s('line', { x1: x, x2: x, y1: y1, y2: y1 + 4, class: 'axis' }),
      s('text', { x, y: height - 8, 'text-anchor': 'middle', class: 'tick' }, formatHour(t)),
    );
  }

  // every area first, then every line, so no area hides another series' line
  const lines: SVGPathElement[] = [];
  for (const series of o.series) {
    if (series.values.length === 0) continue;
    const pts = series.values.map((v, i) => `${xOf(i).toFixed(1)},${yOf(v).toFixed(1)}`);
    const line = `M${pts.join('L')}`;
    const area = `${line}L${xOf(series.values.length - 1).toFixed(1)},${y1}L${xOf(0).toFixed(1)},${y1}Z`;
    svg.append(s('path', { d: area, class: `area ${series.class}` }));
    lines.push(s('path', { d: line, class: `line ${series.class}` }));
  }
  svg.append(...lines);

  // pointing: a guide line and the bucket's values in the readout
  const guide = s('line', { x1: 0, x2: 0, y1: y0, y2: y1, class: 'guide hidden' });
  const dots = o.series.map((x) => s('circle', { r: 3.5, class: `dot-mark ${x.class} hidden` }));
  svg.append(guide, ...dots);
  const hide = (): void => {
    guide.classList.add('hidden');
    for (const d of dots) d.classList.add('hidden');
    readout.textContent = o.hint ?? '\u00a0';
  };
  svg.addEventListener('pointermove', (e) => {
    const box = svg.getBoundingClientRect();
    const px = e.clientX - box.left;
    const i = Math.min(n - 1, Math.max(0, Math.floor(((px - x0) / (x1 - x0)) * n)));
    const x = xOf(i);
    guide.setAttribute('x1', String(x));
    guide.setAttribute('x2', String(x));
    guide.classList.remove('hidden');
    o.series.forEach((series, k) => {
      const d = dots[k];
      const v = series.values[i];
      if (!d || v === undefined) return;
      d.setAttribute('cx', String(x));
      d.setAttribute('cy', String(yOf(v)));
      d.classList.remove('hidden');
    });
    const t = o.start + i * o.stepMs;
    readout.textContent = `${formatClock(t)}–${formatClock(t + o.stepMs)}: ${o.series
      .map((x) => `${x.label} ${o.formatValue(x.values[i] ?? 0)}`)
      .join(', ')}`;
  });
  svg.addEventListener('pointerleave', hide);
  return svg;
}

/** The chart with its legend; it draws itself once it is in the page and redraws when its width changes. */
export function timeChart(o: TimeChartOptions): HTMLElement {
  const plot = h('div', { class: 'chart-plot' });
  const readout = h('p', { class: 'chart-readout' }, o.hint ?? '\u00a0');
  const legend = h(
    'ul',
    { class: 'chart-legend' },
    ...o.series.map((x) => h('li', null, h('span', { class: `swatch ${x.class}` }), x.label)),
  );
  const figure = h('figure', { class: 'chart', testid: 'traffic-chart' }, legend, plot, readout);
  let drawnWidth = 0;
  new ResizeObserver(() => {
    const width = Math.floor(plot.clientWidth);
    if (width <= 0 || width === drawnWidth) return;
    drawnWidth = width;
    replace(plot, draw(width, o, readout));
  }).observe(plot);
  return figure;
}
