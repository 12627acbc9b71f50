/**
 * The audit log, newest first: when, who, what, about what, and the details. "Show older" fetches the next
 * page with `before` (the last id shown); a target filter narrows it to one member, group, route or policy.
 */
import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { showApiError } from '../form-errors.js';
import { formatDateTime, formatRelative } from '../format.js';
import type { PageContext } from '../page.js';
import type { AuditEntry } from '../types.js';
import { busy, card, emptyState, field, loading, pageHeader } from '../ui.js';

const PAGE_SIZE = 50;

function detailText(value: unknown): string {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(detailText).join(', ') || '—';
  return JSON.stringify(value);
}

function detailView(detail: Readonly<Record<string, unknown>>): HTMLElement {
  const entries = Object.entries(detail);
  if (entries.length === 0) return h('span', { class: 'muted' }, '—');
  return h(
    'ul',
    { class: 'detail' },
    ...entries.map(([k, v]) => h('li', null, h('span', { class: 'detail-key' }, `${k}: `), detailText(v))),
  );
}

function row(e: AuditEntry): HTMLTableRowElement {
  return h(
    'tr',
    { testid: 'audit-row', 'data-id': e.id },
    h(
      'td',
      { 'data-label': 'When', class: 'nowrap' },
      h('time', { datetime: e.at, title: formatRelative(e.at) }, formatDateTime(e.at)),
    ),
    h('td', { 'data-label': 'Who', class: 'nowrap' }, e.actor),
    h('td', { 'data-label': 'What', class: 'nowrap' }, h('code', null, e.action)),
    h('td', { 'data-label': 'Target' }, e.target || '—'),
    h('td', { 'data-label': 'Detail', class: 'col-grow' }, detailView(e.detail)),
  );
}

export async function auditPage(ctx: PageContext): Promise<void> {
  const tbody = h('tbody');
  const tableEl = h(
    'table',
    { class: 'table audit-table' },
    h('caption', { class: 'visually-hidden' }, 'Audit log'),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ...['When', 'Who', 'What', 'Target', 'Detail'].map((t) =>
          h('th', { scope: 'col', class: t === 'Detail' ? 'col-grow' : undefined }, t),
        ),
      ),
    ),
    tbody,
  );
  const list = h('div', { class: 'list' }, loading());
  const older = h('button', { type: 'button', testid: 'audit-older' }, 'Show older');
  const pager = h('div', { class: 'pager hidden' }, older);
  const target = h('input', {
    type: 'search',
    name: 'target',
    autocomplete: 'off',
    placeholder: 'alice, eng, 10.20.0.0/24, #3',
    testid: 'audit-target',
  });
  const filter = h(
    'form',
    { role: 'search', class: 'search', 'aria-label': 'Audit log' },
    field('Only about', target),
    h('button', { type: 'submit' }, 'Filter'),
  );

  let last: number | undefined;
  let shown = 0;
  const load = async (reset: boolean): Promise<void> => {
    if (reset) {
      last = undefined;
      shown = 0;
      tbody.replaceChildren();
    }
    try {
      const entries = await api.listAudit(
        { before: last, limit: PAGE_SIZE, target: target.value.trim() || undefined },
        ctx.signal,
      );
      for (const e of entries) tbody.appendChild(row(e));
      shown += entries.length;
      last = entries.at(-1)?.id ?? last;
      replace(list, shown === 0 ? emptyState('No entries.', { testid: 'audit-empty' }) : tableEl);
      pager.classList.toggle('hidden', entries.length < PAGE_SIZE);
    } catch (err) {
      showApiError(err);
    }
  };

  filter.addEventListener('submit', (e) => {
    e.preventDefault();
    void load(true);
  });
  older.addEventListener('click', () => void busy(older, () => load(false)));

  ctx.main.append(pageHeader('Audit log'), card(null, null, filter, list, pager));
  await load(true);
}
