/**
 * The "traffic over the last 24 hours" card of the dashboard and of a member's page: totals, and a chart
 * of the average rate per 15 minutes, or a plain sentence when nothing moved.
 */
import { timeChart } from './chart.js';
import { h, replace } from './dom.js';
import { showApiError } from './form-errors.js';
import { formatBytes, formatRate } from './format.js';
import { isAbort } from './http.js';
import { bucketTraffic, DAY_MS } from './traffic.js';
import type { TrafficSample } from './types.js';
import { card, emptyState, loading } from './ui.js';

const BUCKET_MS = 15 * 60 * 1000;

export interface TrafficCardOptions {
  readonly title: string;
  /** Series names: what the gateway received, and what it sent. */
  readonly inLabel: string;
  readonly outLabel: string;
  readonly load: (since: Date, signal: AbortSignal) => Promise<TrafficSample[]>;
  readonly signal: AbortSignal;
}

export function trafficCard(o: TrafficCardOptions): HTMLElement {
  const body = h('div', { class: 'traffic-body' }, loading());
  const el = card(o.title, { class: 'traffic', testid: 'traffic' }, body);
  const until = Date.now();
  const since = until - DAY_MS;
  o.load(new Date(since), o.signal).then(
    (samples) => {
      const b = bucketTraffic(samples, since, until, BUCKET_MS);
      const summary = h(
        'p',
        { class: 'traffic-summary' },
        h(
          'span',
          null,
          `${o.inLabel}, last 24 hours: `,
          h('strong', { testid: 'traffic-total-in' }, formatBytes(b.totalRx)),
        ),
        h(
          'span',
          null,
          `${o.outLabel}, last 24 hours: `,
          h('strong', { testid: 'traffic-total-out' }, formatBytes(b.totalTx)),
        ),
      );
      if (b.totalRx === 0 && b.totalTx === 0) {
        replace(body, emptyState('No traffic in the last 24 hours.', { testid: 'traffic-empty' }));
        return;
      }
      const perSecond = (v: number): number => v / (BUCKET_MS / 1000);
      replace(
        body,
        summary,
        timeChart({
          start: b.start,
          stepMs: b.bucketMs,
          series: [
            { label: o.inLabel, class: 'series-in', values: b.rx.map(perSecond) },
            { label: o.outLabel, class: 'series-out', values: b.tx.map(perSecond) },
          ],
          formatValue: formatRate,
          minStep: 1,
          hint: 'Average rate per 15 minutes; point at the chart for the values.',
          description: `${o.title}: ${o.inLabel} ${formatBytes(b.totalRx)}, ${o.outLabel} ${formatBytes(
            b.totalTx,
          )}, average rate per 15 minutes`,
        }),
      );
    },
    (err: unknown) => {
      if (isAbort(err)) return;
      replace(body, emptyState('The traffic history could not be loaded.'));
      showApiError(err);
    },
  );
  return el;
}
