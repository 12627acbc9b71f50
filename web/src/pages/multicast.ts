/**
 * Multicast: its settings (on/off and the LAN interface, applied at the next start; the querier's timers and
 * the static memberships, applied live), saved with PATCH /settings through multicast-values.ts; and the
 * running gateway's groups with their receivers and senders, each port's figures, and drops by reason
 * (GET /multicast; refreshed every 5 s).
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { h, replace, uid } from '../dom.js';
import { clearFieldErrors, showApiError, showFieldError } from '../form-errors.js';
import { ApiError } from '../http.js';
import {
  formField,
  multicastFormValues,
  multicastPatch,
  QUERIER_DEFAULTS,
  QUERIER_KEYS,
  type MulticastFormValues,
  type QuerierKey,
} from '../multicast-values.js';
import { every, type PageContext } from '../page.js';
import type { MulticastState, Settings } from '../types.js';
import { busy, card, checkbox, emptyState, field, loading, pageHeader, table } from '../ui.js';

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
          : 'Multicast is off (turn it on above, then restart the gateway).',
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

const QUERIER_LABELS: Readonly<Record<QuerierKey, readonly [string, string]>> = {
  robustness: ['Robustness', 'Lost queries tolerated + 1 (1 to 7).'],
  queryIntervalS: ['Query interval (s)', 'Between general queries.'],
  queryResponseIntervalS: ['Query response interval (s)', 'In tenths; below the query interval.'],
  lastMemberQueryIntervalS: ['Last member query interval (s)', 'After a leave; in tenths.'],
};

/** The settings form: the switch, the LAN interface, the querier's timers and the static memberships. */
function settingsForm(initial: Settings, ports: readonly string[]): HTMLElement {
  let current = initial;
  let values: MulticastFormValues = multicastFormValues(current);

  const on = h('input', { name: 'multicast', 'data-field': 'multicast', testid: 'multicast-on' });
  const lan = h('input', {
    name: 'multicastLan',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'none, e.g. eth1',
    'data-field': 'multicastLan',
    testid: 'multicast-lan',
  });
  const timers = Object.fromEntries(
    QUERIER_KEYS.map((k) => [
      k,
      h('input', {
        name: k,
        inputmode: 'decimal',
        autocomplete: 'off',
        placeholder: String(QUERIER_DEFAULTS[k]),
        'data-field': `multicastQuerier.${k}`,
        testid: `multicast-querier-${k}`,
      }),
    ]),
  ) as Record<QuerierKey, HTMLInputElement>;

  const listId = uid('ports');
  const portList = h('datalist', { id: listId }, ...ports.map((p) => h('option', { value: p })));
  const rowsBox = h('div', { class: 'static-rows' });
  const statics = h(
    'fieldset',
    { class: 'field', 'data-field': 'multicastStatic', testid: 'multicast-static' },
    h('legend', null, 'Static memberships'),
    h(
      'p',
      { class: 'hint' },
      'A port joined to a group without IGMP/MLD reports: member:NAME, site:NAME or lan. Applied live.',
    ),
    rowsBox,
    portList,
  );
  const renderRows = (): void => {
    if (values.statics.length === 0) {
      replace(rowsBox, emptyState('None.', { testid: 'multicast-static-empty' }));
      return;
    }
    replace(
      rowsBox,
      ...values.statics.map((row, i) => {
        const port = h('input', {
          name: `port-${i}`,
          autocomplete: 'off',
          spellcheck: 'false',
          list: listId,
          placeholder: 'member:NAME',
          value: row.port,
          'aria-label': `Membership ${i + 1}: port`,
          'data-field': `multicastStatic[${i}].port`,
          testid: `multicast-static-port-${i}`,
        });
        const group = h('input', {
          name: `group-${i}`,
          autocomplete: 'off',
          spellcheck: 'false',
          placeholder: '239.1.1.1',
          value: row.group,
          'aria-label': `Membership ${i + 1}: group`,
          'data-field': `multicastStatic[${i}].group`,
          testid: `multicast-static-group-${i}`,
        });
        port.addEventListener('input', () => (row.port = port.value));
        group.addEventListener('input', () => (row.group = group.value));
        const remove = h(
          'button',
          {
            type: 'button',
            testid: `multicast-static-remove-${i}`,
            'aria-label': `Remove membership ${i + 1}`,
          },
          'Remove',
        );
        remove.addEventListener('click', () => {
          values.statics.splice(i, 1);
          clearFieldErrors(rowsBox);
          renderRows();
        });
        return h(
          'div',
          { class: 'static-row', testid: 'multicast-static-row' },
          h('div', { class: 'field' }, port),
          h('div', { class: 'field' }, group),
          remove,
        );
      }),
    );
  };
  const addRow = h('button', { type: 'button', testid: 'multicast-static-add' }, 'Add membership');
  addRow.addEventListener('click', () => {
    values.statics.push({ port: '', group: '' });
    renderRows();
    rowsBox
      .querySelector<HTMLInputElement>(`[data-field="multicastStatic[${values.statics.length - 1}].port"]`)
      ?.focus();
  });

  const fill = (): void => {
    values = multicastFormValues(current);
    on.checked = values.on;
    lan.value = values.lan;
    for (const k of QUERIER_KEYS) timers[k].value = values.querier[k];
    renderRows();
  };

  const save = h(
    'button',
    { type: 'submit', class: 'primary', testid: 'multicast-save' },
    'Save multicast settings',
  );
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Multicast settings' },
    h(
      'div',
      { class: 'row' },
      h('div', { class: 'field check-field' }, checkbox('Multicast across the overlay', on)),
      field('LAN interface (IGMP proxy)', lan, 'Empty: none. Both apply at the next start.'),
    ),
    h('h3', null, 'Querier timers (RFC 3376 §8)'),
    h('p', { class: 'hint' }, 'Empty fields take the default shown in them. Applied live.'),
    h(
      'div',
      { class: 'row' },
      ...QUERIER_KEYS.map((k) => field(QUERIER_LABELS[k][0], timers[k], QUERIER_LABELS[k][1])),
    ),
    statics,
    h('div', { class: 'actions' }, addRow, save),
  );

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    values.on = on.checked;
    values.lan = lan.value;
    for (const k of QUERIER_KEYS) values.querier[k] = timers[k].value;
    const result = multicastPatch(values, current);
    if (!result.ok) {
      for (const issue of [...result.issues].reverse()) showFieldError(form, issue.field, issue.message);
      return;
    }
    if (Object.keys(result.patch).length === 0) {
      showNotice('Nothing changed.');
      return;
    }
    void busy(save, async () => {
      try {
        current = await api.updateSettings(result.patch);
        fill();
        showNotice('Multicast settings saved.');
      } catch (err) {
        if (err instanceof ApiError && err.field) {
          clearFieldErrors(form);
          if (showFieldError(form, formField(err.field, result.rows), err.message)) return;
        }
        showApiError(err, form);
      }
    });
  });

  fill();
  return form;
}

/** What a static membership's port can name: lan, the sites and (the first 1000) members. */
async function knownPorts(signal: AbortSignal): Promise<string[]> {
  const [sites, members] = await Promise.allSettled([
    api.listSites(signal),
    api.listMembers({ limit: 1000 }, signal),
  ]);
  return [
    'lan',
    ...(sites.status === 'fulfilled' ? sites.value.map((s) => `site:${s.name}`) : []),
    ...(members.status === 'fulfilled' ? members.value.items.map((m) => `member:${m.name}`) : []),
  ];
}

export async function multicastPage(ctx: PageContext): Promise<void> {
  const settingsBox = h('div', null, loading());
  const box = h('div', { class: 'list' }, loading());
  ctx.main.append(
    pageHeader('Multicast'),
    card('Settings', { testid: 'multicast-settings' }, settingsBox),
    box,
  );
  const load = async (): Promise<void> => {
    try {
      replace(box, ...view(await api.getMulticast(ctx.signal)));
    } catch (err) {
      showApiError(err);
    }
  };
  const loadSettings = async (): Promise<void> => {
    try {
      const [settings, ports] = await Promise.all([api.getSettings(ctx.signal), knownPorts(ctx.signal)]);
      replace(settingsBox, settingsForm(settings, ports));
    } catch (err) {
      replace(settingsBox);
      showApiError(err);
    }
  };
  await Promise.all([loadSettings(), load()]);
  every(ctx, REFRESH_MS, () => void load());
}
