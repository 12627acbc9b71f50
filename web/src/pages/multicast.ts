/**
 * Multicast: the running gateway's groups with their receivers and senders, each port's figures, and drops
 * by reason (GET /multicast; refreshed every 5 s). Read-only: the setting is on the Settings page.
 */
import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { showApiError } from '../form-errors.js';
import { every, type PageContext } from '../page.js';
import type { MulticastState } from '../types.js';
import { card, emptyState, loading, pageHeader, table } from '../ui.js';

const REFRESH_MS = 5_000;

function dropsText(drops: Readonly<Record<string, number>>): string {
  const parts = Object.entries(drops)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${why} ${n}`);
  return parts.length > 0 ? parts.join(', ') : '—';
}

function view(state: MulticastState): HTMLElement[] {
  const live = state.live;
  if (!live)
    return [
      emptyState(
        state.on
          ? 'Multicast is on, but no gateway runs in this process: no live state.'
          : 'Multicast is off (turn it on in the settings, then restart the gateway).',
        { testid: 'multicast-empty' },
      ),
    ];
  const c = live.counters;
  const groups =
    live.groups.length === 0
      ? emptyState('No group has receivers.', { testid: 'multicast-no-groups' })
      : table(
          [
            { title: 'Group', class: 'col-name', cell: (g) => h('code', null, g.group) },
            {
              title: 'Receivers',
              class: 'col-grow',
              cell: (g) =>
                g.receivers
                  .map((r) => `${r.port} (${r.expiresInS === null ? 'static' : `${r.expiresInS} s`})`)
                  .join(', '),
            },
            {
              title: 'Senders',
              cell: (g) => g.senders.map((s) => `${s.port} (${s.packets})`).join(', ') || '—',
            },
            { title: 'Packets', cell: (g) => String(g.packets) },
            { title: 'Copies', cell: (g) => String(g.copies) },
          ],
          live.groups,
          (g) => ({ testid: `multicast-group-${g.group}` }),
          'Groups',
        );
  const ports = table(
    [
      { title: 'Port', class: 'col-name', cell: (p) => h('code', null, p.port) },
      { title: 'Sent', cell: (p) => String(p.sent) },
      { title: 'Received', cell: (p) => String(p.received) },
      { title: 'Dropped (why)', class: 'col-grow', cell: (p) => dropsText(p.drops) },
    ],
    live.ports,
    (p) => ({ testid: `multicast-port-${p.port}` }),
    'Ports',
  );
  return [
    card(
      null,
      { testid: 'multicast-totals' },
      h(
        'p',
        null,
        `${c.packets} packets, ${c.copies} copies, ${c.reports} membership reports. Drops: ${dropsText(live.drops)}`,
      ),
    ),
    card('Groups', null, groups),
    card('Ports', null, ports),
  ];
}

export async function multicastPage(ctx: PageContext): Promise<void> {
  const box = h('div', { class: 'list' }, loading());
  ctx.main.append(pageHeader('Multicast'), box);
  const load = async (): Promise<void> => {
    try {
      replace(box, ...view(await api.getMulticast(ctx.signal)));
    } catch (err) {
      showApiError(err);
    }
  };
  await load();
  every(ctx, REFRESH_MS, () => void load());
}
