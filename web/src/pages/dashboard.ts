/**
 * The dashboard: the gateway's status (refreshed every 15 s) and everyone's traffic over the last 24 hours.
 */
import * as api from '../api.js';
import { copyButton } from '../clipboard.js';
import { h, replace } from '../dom.js';
import { showApiError } from '../form-errors.js';
import { formatBytes, formatDateTime, formatRelative } from '../format.js';
import { every, type PageContext } from '../page.js';
import { trafficCard } from '../traffic-card.js';
import type { Status } from '../types.js';
import { card, facts, loading, pageHeader } from '../ui.js';

const REFRESH_MS = 15_000;

function tile(label: string, value: string, testid: string, note?: string): HTMLElement {
  return h(
    'div',
    { class: 'tile', testid },
    h('span', { class: 'tile-label' }, label),
    h('span', { class: 'tile-value' }, value),
    note ? h('span', { class: 'tile-note' }, note) : null,
  );
}

function statusView(st: Status): HTMLElement[] {
  const live = st.live;
  const m = st.members;
  const key = h('code', { class: 'key' }, live?.publicKey ?? st.gateway.publicKey);
  const tiles = h(
    'div',
    { class: 'tiles' },
    tile('Members', String(m.total), 'stat-members-total', `${m.active} active`),
    tile('Online', String(m.online), 'stat-members-online', m.total ? `of ${m.total}` : undefined),
    tile('Disabled / expired', `${m.disabled} / ${m.expired}`, 'stat-members-inactive'),
    tile(
      'Moved since start',
      live ? formatBytes(live.rxBytes + live.txBytes) : '—',
      'stat-bytes',
      live
        ? `in ${formatBytes(live.rxBytes)} · out ${formatBytes(live.txBytes)}`
        : 'gateway not running here',
    ),
  );
  const gateway = card(
    'Gateway',
    { testid: 'gateway-status' },
    h(
      'p',
      { class: `gateway-state ${live ? 'is-running' : 'is-stopped'}` },
      h('span', { class: `dot ${live ? 'dot-online' : 'dot-offline'}`, 'aria-hidden': 'true' }),
      live
        ? `Running since ${formatDateTime(live.startedAt)} (${formatRelative(live.startedAt)})`
        : 'The gateway is not running in this process: live figures are unavailable.',
    ),
    facts([
      ['Interface', live?.interfaceName ?? st.settings.interfaceName],
      ['Endpoint', h('code', null, st.settings.endpoint)],
      ['Listen port', `UDP ${live?.listenPort ?? st.settings.listenPort}`],
      ['Public key', h('span', { class: 'with-copy' }, key, copyButton(key))],
      ['Gateway address', [st.gateway.ip, st.gateway.ip6].filter(Boolean).join(', ')],
      ['Member subnet', [st.settings.subnet, st.settings.subnet6].filter(Boolean).join(', ')],
      ['Default policy', st.settings.defaultPolicy],
    ]),
  );
  return [tiles, gateway];
}

export async function dashboardPage(ctx: PageContext): Promise<void> {
  const statusBox = h('div', { class: 'status-box' }, loading());
  ctx.main.append(
    pageHeader('Dashboard'),
    statusBox,
    trafficCard({
      title: 'Traffic, last 24 hours',
      inLabel: 'In (from members)',
      outLabel: 'Out (to members)',
      load: (since, signal) => api.getTraffic(since, signal),
      signal: ctx.signal,
    }),
  );
  const load = async (): Promise<void> => {
    try {
      const st = await api.getStatus(ctx.signal);
      replace(statusBox, ...statusView(st));
    } catch (err) {
      showApiError(err);
    }
  };
  await load();
  every(ctx, REFRESH_MS, () => void load());
}
