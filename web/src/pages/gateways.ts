/**
 * Gateways: those registered in a shared PostgreSQL store (`weft gateway join`), with state, region, endpoint,
 * last heartbeat and the members online on each (GET /gateways; refreshed every 5 s). On SQLite the gateway is
 * alone and nothing is registered: the page says so.
 */
import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { showApiError } from '../form-errors.js';
import { formatDateTime, formatRelative } from '../format.js';
import { every, type PageContext } from '../page.js';
import type { GatewayItem } from '../types.js';
import { card, emptyState, loading, onlineDot, pageHeader, table } from '../ui.js';

const REFRESH_MS = 5_000;

function view(gateways: readonly GatewayItem[]): HTMLElement[] {
  if (gateways.length === 0)
    return [
      emptyState(
        'No gateway is registered: this network runs one gateway on its own store (SQLite). Gateways sharing ' +
          'a PostgreSQL store appear here once they join (weft gateway join).',
        { testid: 'gateways-empty' },
      ),
    ];
  const unknown = gateways.some((g) => g.membersOnline === null);
  return [
    card(
      null,
      null,
      table(
        [
          {
            title: 'Gateway',
            class: 'col-name',
            cell: (g) => h('span', null, onlineDot(g.state === 'up'), ' ', g.name),
          },
          {
            title: 'State',
            cell: (g) => (g.state === 'up' ? 'up' : `silent ${Math.round(g.silentMs / 1000)} s`),
          },
          { title: 'Region', cell: (g) => g.region || '—' },
          { title: 'Endpoint', class: 'col-grow', cell: (g) => h('code', null, g.endpoint) },
          {
            title: 'Last seen',
            cell: (g) => h('span', { title: formatDateTime(g.lastSeen) }, formatRelative(g.lastSeen)),
          },
          {
            title: 'Members online',
            cell: (g) => (g.membersOnline === null ? '?' : String(g.membersOnline)),
          },
        ],
        gateways,
        (g) => ({ testid: `gateway-${g.name}` }),
        'Gateways',
      ),
      unknown
        ? h(
            'p',
            { class: 'hint' },
            'Members online per gateway: "?" where the member statuses do not say which gateway holds them.',
          )
        : null,
    ),
  ];
}

export async function gatewaysPage(ctx: PageContext): Promise<void> {
  const box = h('div', { class: 'list' }, loading());
  ctx.main.append(pageHeader('Gateways'), box);
  const load = async (): Promise<void> => {
    try {
      replace(box, ...view(await api.getGateways(ctx.signal)));
    } catch (err) {
      showApiError(err);
    }
  };
  await load();
  every(ctx, REFRESH_MS, () => void load());
}
