/**
 * One member: its state and status, enable/disable, key rotation and removal (both asked first), its groups,
 * expiry and tunnel mode, its config (text, QR code, .conf download, one-time download link) and its
 * traffic over the last 24 hours.
 */
import * as api from '../api.js';
import { flashNotice, showNotice } from '../banner.js';
import { copyButton } from '../clipboard.js';
import { confirmDialog } from '../confirm.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError, showFieldError } from '../form-errors.js';
import { expiryDate, formatBytes, formatDateTime, formatRelative, parseExpiryInput } from '../format.js';
import { groupPicker } from '../group-picker.js';
import { ApiError, isAbort } from '../http.js';
import { memberState } from '../member-state.js';
import type { PageContext } from '../page.js';
import { navigate } from '../router.js';
import { trafficCard } from '../traffic-card.js';
import { PROTOCOL_LABELS, type Group, type Member } from '../types.js';
import {
  busy,
  card,
  checkbox,
  emptyState,
  facts,
  field,
  loading,
  onlineDot,
  pageHeader,
  select,
  stateBadge,
} from '../ui.js';

const LINK_TTLS: readonly (readonly [string, string])[] = [
  ['60', '1 hour'],
  ['1440', '24 hours'],
  ['10080', '7 days'],
];

function detailsCard(m: Member): HTMLElement {
  const st = m.status;
  const key = h('code', { class: 'key' }, m.publicKey);
  return card(
    'Details',
    { testid: 'member-details' },
    facts([
      ['Address', h('code', null, [m.ip, m.ip6].filter(Boolean).join(', '))],
      ['Public key', h('span', { class: 'with-copy' }, key, copyButton(key))],
      ['Keys', m.hasPrivateKey ? 'Made by the server' : 'The member’s own (the server has no private key)'],
      ['Groups', m.groups.length ? m.groups.join(', ') : '—'],
      [
        'Tunnel',
        m.fullTunnel ? 'Full (all traffic through the gateway)' : 'Split (only what policies allow)',
      ],
      ['Expires', m.expiresAt ? `${expiryDate(m.expiresAt)} (${formatRelative(m.expiresAt)})` : 'Never'],
      ['Online', st?.online ? 'Yes' : 'No'],
      [
        'Connected with',
        h(
          'span',
          { testid: 'member-connection' },
          st?.online && st.protocol
            ? `${PROTOCOL_LABELS[st.protocol]}${st.since ? ` since ${formatDateTime(st.since)} (${formatRelative(st.since)})` : ''}`
            : '—',
        ),
      ],
      ['Endpoint', st?.endpoint ? h('code', null, st.endpoint) : '—'],
      [
        'Last handshake',
        st?.lastHandshake
          ? `${formatRelative(st.lastHandshake)} (${formatDateTime(st.lastHandshake)})`
          : 'Never',
      ],
      [
        'Traffic this session',
        h(
          'span',
          { testid: 'member-session-traffic' },
          st ? `in ${formatBytes(st.rxBytes)} · out ${formatBytes(st.txBytes)}` : '—',
          h(
            'span',
            { class: 'hint' },
            ' (since the gateway last started or enabled the member; the chart below covers 24 hours)',
          ),
        ),
      ],
      ['Dropped by policy', st ? `${st.policyDrops} packet${st.policyDrops === 1 ? '' : 's'}` : '—'],
      [
        'Config',
        h(
          'span',
          { testid: 'member-config-state' },
          m.configDownload === null
            ? 'Never handed out'
            : m.configDownload.stale
              ? `Changed since it was downloaded (${formatRelative(m.configDownload.at)})`
              : `Current (downloaded ${formatRelative(m.configDownload.at)})`,
        ),
      ],
      [
        'OpenVPN profile',
        h(
          'span',
          { testid: 'member-openvpn-config-state' },
          m.openvpnConfigDownload === null
            ? 'Never handed out'
            : m.openvpnConfigDownload.stale
              ? `Changed since it was downloaded (${formatRelative(m.openvpnConfigDownload.at)})`
              : `Current (downloaded ${formatRelative(m.openvpnConfigDownload.at)})`,
        ),
      ],
      ['Created', formatDateTime(m.createdAt)],
    ]),
  );
}

function editCard(m: Member, groups: readonly Group[], onSaved: (m: Member) => void): HTMLElement {
  const picker = groupPicker(groups, m.groups);
  // ISO text rather than type=date, whose picker shows the date in the browser's (often US) format.
  const expires = h('input', {
    type: 'text',
    name: 'expiresAt',
    value: expiryDate(m.expiresAt),
    placeholder: 'YYYY-MM-DD',
    inputmode: 'numeric',
    autocomplete: 'off',
    maxlength: 10,
    'data-field': 'expiresAt',
    testid: 'member-expires',
  });
  const fullTunnel = h('input', {
    type: 'checkbox',
    name: 'fullTunnel',
    checked: m.fullTunnel,
    testid: 'member-full-tunnel',
  });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'member-save' }, 'Save changes');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Groups and expiry' },
    picker.el,
    field('Expires', expires, 'A date as YYYY-MM-DD (the member is cut off at its end, UTC); empty: never.'),
    checkbox('Full tunnel (all traffic through the gateway)', fullTunnel),
    h('div', { class: 'actions' }, save),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const expiry = parseExpiryInput(expires.value);
    if (expiry === undefined) {
      showFieldError(form, 'expiresAt', 'Give a date as YYYY-MM-DD, e.g. 2027-06-30, or leave it empty.');
      return;
    }
    void busy(save, async () => {
      try {
        const updated = await api.updateMember(m.name, {
          groups: picker.value(),
          expiresAt: expiry || null,
          fullTunnel: fullTunnel.checked,
        });
        onSaved(updated);
      } catch (err) {
        showApiError(err, form);
      }
    });
  });
  return card('Groups and expiry', { testid: 'member-edit' }, form);
}

function linkSection(m: Member): HTMLElement {
  const ttl = select(LINK_TTLS, { name: 'ttlMinutes', testid: 'member-link-ttl' });
  ttl.value = '1440';
  const create = h('button', { type: 'submit', testid: 'member-link-create' }, 'Create one-time link');
  const result = h('div', { class: 'link-result', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'form inline-form', 'aria-label': 'One-time download link' },
    field('Valid for', ttl),
    h('div', { class: 'actions' }, create),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void busy(create, async () => {
      try {
        const link = await api.createMemberLink(m.name, Number(ttl.value));
        const url = h(
          'code',
          { class: 'link-url', testid: 'member-link-url' },
          new URL(link.url, window.location.origin).href,
        );
        replace(
          result,
          h('div', { class: 'with-copy' }, url, copyButton(url, 'Copy link', 'member-link-copy')),
          h(
            'p',
            { class: 'hint', testid: 'member-link-expiry' },
            `Works once, until ${formatDateTime(link.expiresAt)} (${formatRelative(link.expiresAt)}). `,
            'Anyone with the link can download the config, private key included: send it only to its owner.',
          ),
        );
      } catch (err) {
        showApiError(err, form);
      }
    });
  });
  return h(
    'div',
    { class: 'subsection' },
    h('h3', null, 'One-time download link'),
    h('p', { class: 'hint' }, 'A link that downloads this config once, without logging in.'),
    form,
    result,
  );
}

/**
 * The config text and the QR code load when asked for, not with the page: handing a config out is recorded
 * (its fingerprint, to tell later when it went stale), and merely opening the member's page hands nothing out.
 */
function configTextCard(m: Member, signal: AbortSignal): HTMLElement {
  const pre = h('pre', { class: 'config hidden', testid: 'member-config' });
  const show = h('button', { type: 'button', testid: 'member-config-show' }, 'Show config');
  const copy = copyButton(pre, 'Copy config', 'member-config-copy');
  copy.classList.add('hidden');
  show.addEventListener('click', () => {
    show.remove();
    pre.classList.remove('hidden');
    copy.classList.remove('hidden');
    pre.textContent = 'Loading…';
    api.getMemberConfig(m.name, signal).then(
      (text) => (pre.textContent = text),
      (err: unknown) => {
        if (isAbort(err)) return;
        pre.textContent = '';
        showApiError(err);
      },
    );
  });
  return h(
    'section',
    { class: 'card', testid: 'member-config-card' },
    h('div', { class: 'subsection-head' }, h('h2', null, 'wg-quick config'), copy),
    m.hasPrivateKey
      ? null
      : h('p', { class: 'hint' }, 'The device puts its own private key where the placeholder is.'),
    show,
    pre,
  );
}

function qrFigure(m: Member): HTMLElement {
  const show = h('button', { type: 'button', class: 'qr-show', testid: 'member-qr-show' }, 'Show QR code');
  const figure = h(
    'figure',
    { class: 'qr' },
    show,
    h('figcaption', { class: 'hint' }, 'Scan with the WireGuard app (Add tunnel → Scan from QR code).'),
  );
  show.addEventListener('click', () =>
    show.replaceWith(
      h('img', {
        src: api.memberQrUrl(m.name),
        alt: `QR code of ${m.name}’s WireGuard configuration`,
        width: 240,
        height: 240,
        testid: 'member-qr',
      }),
    ),
  );
  return figure;
}

function configCard(m: Member): HTMLElement {
  const qr = m.hasPrivateKey
    ? qrFigure(m)
    : h(
        'div',
        { class: 'qr-note', testid: 'member-qr-note' },
        h('p', null, h('strong', null, 'No QR code for this member.')),
        h(
          'p',
          null,
          `${m.name} brought its own key pair, so the server never had the private key: its config has a `,
          'placeholder where the device must put its own private key. A QR code of it would import as a tunnel ',
          'that cannot connect.',
        ),
      );
  return card(
    'Configuration',
    { class: 'config-card', testid: 'member-config-actions' },
    h(
      'div',
      { class: 'config-top' },
      qr,
      h(
        'div',
        { class: 'config-actions' },
        h(
          'a',
          {
            class: 'button primary',
            href: api.memberConfigUrl(m.name),
            download: `${m.name}.conf`,
            testid: 'member-download',
          },
          `Download ${m.name}.conf`,
        ),
        h(
          'a',
          {
            class: 'button',
            href: api.memberOpenVpnUrl(m.name),
            download: `${m.name}.ovpn`,
            testid: 'member-download-openvpn',
          },
          `Download ${m.name}.ovpn (OpenVPN)`,
        ),
        linkSection(m),
      ),
    ),
  );
}

async function rotate(m: Member, rerender: () => void): Promise<void> {
  const key = h('input', {
    name: 'publicKey',
    autocomplete: 'off',
    spellcheck: 'false',
    testid: 'rotate-public-key',
  });
  const ok = await confirmDialog({
    title: `Rotate ${m.name}’s keys?`,
    message:
      'The current WireGuard key and OpenVPN certificate stop working at once: the device cannot connect ' +
      'until it gets its new config.',
    confirm: 'Rotate keys',
    danger: true,
    extra: m.hasPrivateKey
      ? null
      : field('New public key (optional)', key, 'Leave empty to have the server make a new key pair.'),
  });
  if (!ok) return;
  try {
    await api.rotateMember(m.name, key.value.trim() || undefined);
    flashNotice(`New keys for ${m.name}: the old key no longer works. Give the device its new config.`);
    rerender();
  } catch (err) {
    showApiError(err);
  }
}

async function remove(m: Member): Promise<void> {
  const ok = await confirmDialog({
    title: `Remove ${m.name}?`,
    message: `${m.name} is cut off at once and its address ${m.ip} is freed. This cannot be undone.`,
    confirm: 'Remove member',
    danger: true,
  });
  if (!ok) return;
  try {
    await api.removeMember(m.name);
    flashNotice(`Member ${m.name} removed.`);
    navigate({ page: 'members' });
  } catch (err) {
    showApiError(err);
  }
}

export async function memberPage(ctx: PageContext, name: string): Promise<void> {
  const back = h('a', { href: '#/members', class: 'back' }, '← Members');
  const body = h('div', { class: 'member-body' }, loading());
  ctx.main.append(back, pageHeader(name), body);
  let m: Member;
  let groups: Group[];
  try {
    [m, groups] = await Promise.all([api.getMember(name, ctx.signal), api.listGroups(ctx.signal)]);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'WEFT_ERR_MEMBER_NOT_FOUND') {
      replace(body, emptyState(`There is no member named “${name}”.`));
      return;
    }
    replace(body);
    showApiError(err);
    return;
  }
  const rerender = (): void => navigate({ page: 'member', name });

  const view = (member: Member): void => {
    m = member;
    const state = memberState(m);
    const toggle = m.disabled
      ? h('button', { type: 'button', class: 'primary', testid: 'member-enable' }, 'Enable')
      : h('button', { type: 'button', testid: 'member-disable' }, 'Disable');
    toggle.addEventListener('click', () => {
      void busy(toggle, async () => {
        try {
          const updated = await api.setMemberDisabled(m.name, !m.disabled);
          view(updated);
          showNotice(`Member ${m.name} ${updated.disabled ? 'disabled: it is cut off' : 'enabled'}.`);
        } catch (err) {
          showApiError(err);
        }
      });
    });
    const rotateButton = h('button', { type: 'button', testid: 'member-rotate' }, 'Rotate keys');
    rotateButton.addEventListener('click', () => void rotate(m, rerender));
    const removeButton = h('button', { type: 'button', class: 'danger', testid: 'member-remove' }, 'Remove');
    removeButton.addEventListener('click', () => void remove(m));

    replace(
      body,
      h(
        'div',
        { class: 'member-bar' },
        h(
          'p',
          { class: 'member-status' },
          stateBadge(state, { testid: 'member-state' }),
          h(
            'span',
            { class: 'online' },
            onlineDot(m.status?.online ?? false),
            m.status?.online ? 'online' : 'offline',
          ),
          state === 'expired' && m.expiresAt
            ? h('span', { class: 'muted' }, `expired ${formatRelative(m.expiresAt)}`)
            : null,
        ),
        h(
          'div',
          { class: 'toolbar', role: 'group', 'aria-label': 'Member actions' },
          toggle,
          rotateButton,
          removeButton,
        ),
      ),
      m.configDownload?.stale
        ? h(
            'p',
            { class: 'notice warning', role: 'status', testid: 'member-config-stale' },
            h('strong', null, 'Config changed since it was downloaded'),
            ` (${formatDateTime(m.configDownload.at)}): a policy, route or setting changed what ${m.name}'s `,
            'device should route. Hand out the new config: download it, show the QR code or send a link.',
          )
        : null,
      h(
        'div',
        { class: 'grid-2' },
        h(
          'div',
          { class: 'stack' },
          detailsCard(m),
          editCard(m, groups, (u) => {
            view(u);
            showNotice(`Saved ${u.name}.`);
          }),
        ),
        configCard(m),
      ),
      configTextCard(m, ctx.signal),
      trafficCard({
        title: 'Traffic, last 24 hours',
        inLabel: `In (from ${m.name})`,
        outLabel: `Out (to ${m.name})`,
        load: (since, signal) => api.getMemberTraffic(m.name, since, signal),
        signal: ctx.signal,
      }),
    );
  };
  view(m);
}
