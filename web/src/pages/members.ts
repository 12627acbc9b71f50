/**
 * Members: a searchable, paginated list (the search runs on the server, `?search=`; pages follow `next`),
 * and the form that adds one, its address prefilled with the one the server would allocate.
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError } from '../form-errors.js';
import { formatBytes, formatDateTime, formatRelative } from '../format.js';
import { groupPicker, type GroupPicker } from '../group-picker.js';
import { memberState } from '../member-state.js';
import type { PageContext } from '../page.js';
import { hashOf } from '../router.js';
import { PROTOCOL_LABELS, type Member, type MemberInput, type MemberPage } from '../types.js';
import {
  busy,
  card,
  checkbox,
  emptyState,
  field,
  loading,
  onlineDot,
  pageHeader,
  stateBadge,
  table,
  type Column,
} from '../ui.js';

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;

const columns: readonly Column<Member>[] = [
  {
    title: 'Name',
    class: 'col-name',
    cell: (m) =>
      h(
        'span',
        { class: 'member-name' },
        onlineDot(m.status?.online ?? false),
        h('a', { href: hashOf({ page: 'member', name: m.name }) }, m.name),
      ),
  },
  { title: 'Address', cell: (m) => h('code', null, m.ip) },
  {
    title: 'Groups',
    cell: (m) =>
      m.groups.length
        ? h('span', { class: 'chips' }, ...m.groups.map((g) => h('span', { class: 'chip' }, g)))
        : h('span', { class: 'muted' }, '—'),
  },
  {
    title: 'Connected',
    cell: (m) =>
      m.status?.online && m.status.protocol
        ? h(
            'span',
            { title: m.status.since ? `since ${formatDateTime(m.status.since)}` : undefined },
            PROTOCOL_LABELS[m.status.protocol],
          )
        : h('span', { class: 'muted' }, '—'),
  },
  {
    title: 'Last handshake',
    cell: (m) => {
      const at = m.status?.lastHandshake ?? null;
      return h('span', { title: at ? formatDateTime(at) : undefined }, formatRelative(at));
    },
  },
  {
    title: 'Traffic',
    cell: (m) =>
      m.status
        ? h(
            'span',
            { class: 'traffic-cell' },
            `in ${formatBytes(m.status.rxBytes)}`,
            h('span', { class: 'sep', 'aria-hidden': 'true' }, ' · '),
            `out ${formatBytes(m.status.txBytes)}`,
          )
        : h('span', { class: 'muted' }, '—'),
  },
  { title: 'State', cell: (m) => stateBadge(memberState(m)) },
];

function listView(page: MemberPage, search: string): HTMLElement {
  if (page.items.length === 0)
    return emptyState(
      search ? `No member matches “${search}”.` : 'No members yet: add the first one with the form above.',
      { testid: 'members-empty' },
    );
  return table(
    columns,
    page.items,
    (m) => ({ testid: `member-row-${m.name}`, class: `member-row state-row-${memberState(m)}` }),
    'Members',
  );
}

interface AddForm {
  readonly el: HTMLElement;
  refresh(): Promise<void>;
}

function addMemberForm(ctx: PageContext, onAdded: (m: Member) => void): AddForm {
  const name = h('input', {
    name: 'name',
    required: true,
    autocomplete: 'off',
    autocapitalize: 'none',
    spellcheck: 'false',
    placeholder: 'alice-laptop',
    'data-field': 'name',
    testid: 'add-member-name',
  });
  const ip = h('input', {
    name: 'ip',
    autocomplete: 'off',
    spellcheck: 'false',
    inputmode: 'decimal',
    'data-field': 'ip',
    testid: 'add-member-ip',
  });
  const expires = h('input', {
    name: 'expiresAt',
    type: 'date',
    'data-field': 'expiresAt',
    testid: 'add-member-expires',
  });
  const fullTunnel = h('input', {
    type: 'checkbox',
    name: 'fullTunnel',
    'data-field': 'fullTunnel',
    testid: 'add-member-full-tunnel',
  });
  const publicKey = h('input', {
    name: 'publicKey',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'base64, 44 characters',
    'data-field': 'publicKey',
    testid: 'add-member-public-key',
  });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'add-member-submit' }, 'Add member');
  const groupsSlot = h('div', { class: 'groups-slot' });
  let picker: GroupPicker = groupPicker([]);
  replace(groupsSlot, picker.el);

  const form = h(
    'form',
    { class: 'form add-member', novalidate: true, 'aria-label': 'Add member' },
    h(
      'div',
      { class: 'row' },
      field('Name', name, 'Letters, digits, “.”, “_” or “-”.'),
      field('IP address', ip, 'Suggested: the next free one.'),
      field('Expires', expires, 'Leave empty: never.'),
    ),
    h(
      'div',
      { class: 'row' },
      groupsSlot,
      h(
        'fieldset',
        { class: 'field' },
        h('legend', null, 'Tunnel'),
        checkbox('Full tunnel: all traffic through the gateway', fullTunnel),
      ),
    ),
    field('Own public key (optional)', publicKey, 'Only if the device made its own key pair.'),
    h('div', { class: 'actions' }, submit),
  );

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const input: MemberInput = { name: name.value.trim(), groups: picker.value() };
    if (ip.value.trim()) input.ip = ip.value.trim();
    if (expires.value) input.expiresAt = expires.value;
    if (publicKey.value.trim()) input.publicKey = publicKey.value.trim();
    if (fullTunnel.checked) input.fullTunnel = true;
    void busy(submit, async () => {
      try {
        const m = await api.addMember(input);
        form.reset();
        picker.reset();
        onAdded(m);
        await refresh();
      } catch (err) {
        showApiError(err, form);
      }
    });
  });

  const refresh = async (): Promise<void> => {
    const [groups, next] = await Promise.allSettled([api.listGroups(ctx.signal), api.nextIp(ctx.signal)]);
    if (groups.status === 'fulfilled') {
      picker = groupPicker(groups.value);
      replace(groupsSlot, picker.el);
    } else showApiError(groups.reason);
    // The next address is a convenience: without it the server allocates one anyway.
    if (next.status === 'fulfilled' && !ip.value) ip.value = next.value.ip;
  };

  return { el: card('Add a member', { class: 'add-member-card' }, form), refresh };
}

export async function membersPage(ctx: PageContext): Promise<void> {
  const search = h('input', {
    type: 'search',
    name: 'search',
    placeholder: 'Name, address or group',
    autocomplete: 'off',
    testid: 'member-search',
  });
  const summary = h('p', { class: 'muted list-summary', 'aria-live': 'polite' });
  const list = h('div', { class: 'list' }, loading());
  const prev = h('button', { type: 'button', testid: 'members-prev' }, 'Previous');
  const next = h('button', { type: 'button', testid: 'members-next' }, 'Next');
  const pager = h('div', { class: 'pager' }, prev, next);

  // `afters[i]` is the `after` that loads page i; the first page has none.
  let afters: (string | undefined)[] = [undefined];
  let current: MemberPage | null = null;
  let request = 0;

  const load = async (): Promise<void> => {
    const mine = ++request;
    const index = afters.length - 1;
    const text = search.value.trim();
    try {
      const page = await api.listMembers(
        { search: text || undefined, after: afters[index], limit: PAGE_SIZE },
        ctx.signal,
      );
      if (mine !== request) return; // a newer search is under way
      current = page;
      const from = index * PAGE_SIZE + 1;
      const to = index * PAGE_SIZE + page.items.length;
      summary.textContent =
        page.total === 0
          ? ''
          : `${page.items.length ? `${from}–${to} of ` : ''}${page.total} member${page.total === 1 ? '' : 's'}${
              text ? ` matching “${text}”` : ''
            }`;
      replace(list, listView(page, text));
      prev.disabled = index === 0;
      next.disabled = page.next === null;
      pager.classList.toggle('hidden', index === 0 && page.next === null);
    } catch (err) {
      if (mine === request) showApiError(err);
    }
  };

  let timer: number | undefined;
  search.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      afters = [undefined];
      void load();
    }, SEARCH_DELAY_MS);
  });
  const searchForm = h(
    'form',
    { role: 'search', class: 'search', 'aria-label': 'Members' },
    field('Search members', search),
  );
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    window.clearTimeout(timer);
    afters = [undefined];
    void load();
  });
  prev.addEventListener('click', () => {
    if (afters.length > 1) afters = afters.slice(0, -1);
    void load();
  });
  next.addEventListener('click', () => {
    if (current?.next) afters = [...afters, current.next];
    void load();
  });

  const add = addMemberForm(ctx, (m) => {
    showNotice(
      `Member ${m.name} added with address ${m.ip}. `,
      h('a', { href: hashOf({ page: 'member', name: m.name }) }, `Open ${m.name}’s config`),
    );
    void load();
  });

  ctx.main.append(
    pageHeader('Members'),
    add.el,
    card('All members', { class: 'members-card' }, searchForm, summary, list, pager),
  );
  await Promise.all([add.refresh(), load()]);
}
