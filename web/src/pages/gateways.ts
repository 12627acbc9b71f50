/**
 * Gateways: those registered in a shared PostgreSQL store (`weft gateway join`), with state, region, endpoint,
 * last heartbeat and the members online on each (GET /gateways; refreshed every 5 s). On SQLite the gateway is
 * alone and nothing is registered: the page says so. Each gateway has a Remove button (asks first); the API
 * refuses to remove one that serves routes or sites (409, naming them), and its message stays beside that
 * row until a removal of it succeeds or the gateway is gone.
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { removeButton } from '../confirm.js';
import { h, replace } from '../dom.js';
import { showApiError } from '../form-errors.js';
import { ApiError, isAbort } from '../http.js';
import { formatDateTime, formatRelative } from '../format.js';
import { every, type PageContext } from '../page.js';
import type { GatewayItem } from '../types.js';
import { card, emptyState, loading, onlineDot, pageHeader, table } from '../ui.js';

const REFRESH_MS = 5_000;

/** A gateway's Remove button and, after a refusal, the API's message beside it. */
type RemoveCell = (g: GatewayItem) => HTMLElement;

function view(gateways: readonly GatewayItem[], removeCell: RemoveCell): HTMLElement[] {
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
          { title: 'Actions', class: 'col-actions', cell: removeCell },
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
  /** The API's refusal per gateway, kept across the 5 s refreshes. */
  const refused = new Map<string, string>();
  const removeCell: RemoveCell = (g) =>
    h(
      'div',
      null,
      removeButton({
        label: `Remove gateway ${g.name}`,
        title: `Remove gateway ${g.name}?`,
        message:
          'Its registration is deleted and the other gateways drop it from their meshes. A gateway that ' +
          'still serves routes or sites is not removed.',
        confirm: 'Remove gateway',
        remove: async () => {
          await api.removeGateway(g.name);
          refused.delete(g.name);
        },
        notice: `Gateway ${g.name} removed.`,
        onNotice: showNotice,
        after: load,
        onError: (err) => {
          if (isAbort(err)) return;
          if (err instanceof ApiError && err.status !== 401) {
            refused.set(g.name, err.message);
            void load();
          } else showApiError(err);
        },
      }),
      refused.has(g.name)
        ? h(
            'p',
            { class: 'field-error', role: 'alert', testid: `gateway-error-${g.name}` },
            refused.get(g.name),
          )
        : null,
    );
  const load = async (): Promise<void> => {
    try {
      const gateways = await api.getGateways(ctx.signal);
      for (const name of refused.keys()) if (!gateways.some((g) => g.name === name)) refused.delete(name);
      replace(box, ...view(gateways, removeCell));
    } catch (err) {
      showApiError(err);
    }
  };
  await load();
  every(ctx, REFRESH_MS, () => void load());
}
