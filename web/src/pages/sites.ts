/**
 * Sites: IPsec tunnels to the firewalls of other sites and clouds. The list shows each site's live state (as
 * the gateway last reported it, refreshed every few seconds) with its IKE SA and each CHILD SA; a form adds a
 * site or edits one; each row has up/down, remove and the remote-end config for download.
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { removeButton } from '../confirm.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError } from '../form-errors.js';
import { formatBytes, formatRelative } from '../format.js';
import { every, type PageContext } from '../page.js';
import type { Site, SiteInput } from '../types.js';
import { busy, card, checkbox, emptyState, facts, field, loading, pageHeader, select, table } from '../ui.js';

const REFRESH_MS = 5000;

function siteState(s: Site): string {
  if (!s.enabled) return 'disabled';
  return s.status?.state ?? 'no status';
}

function list(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/** The IKE SA and each CHILD SA of a site, as last reported. */
function saDetail(s: Site): HTMLElement {
  const st = s.status;
  if (!st) return h('p', { class: 'hint' }, 'No status reported yet (is the server running?).');
  const rows: [string, string][] = [['Reported', formatRelative(st.at)]];
  if (st.ike)
    rows.push(
      [
        'IKE SA',
        `${st.ike.proposal}, peer ${st.ike.peerId} at ${st.ike.remote}${st.ike.encapsulated ? ' (UDP 4500)' : ''}`,
      ],
      ['IKE last rekey', st.ike.rekeyedAt ? formatRelative(st.ike.rekeyedAt) : 'never'],
    );
  else rows.push(['IKE SA', 'none']);
  st.children.forEach((c, i) =>
    rows.push([
      `CHILD SA ${i + 1}`,
      `${c.proposal} over ${c.carrier === 'udp' ? 'UDP 4500' : 'ESP'}; ${c.localSubnets.join(', ')} ↔ ` +
        `${c.remoteSubnets.join(', ')}; in ${formatBytes(c.bytesIn)}, out ${formatBytes(c.bytesOut)}; ` +
        `last rekey ${c.rekeyedAt ? formatRelative(c.rekeyedAt) : 'never'}`,
    ]),
  );
  rows.push([
    'Last error',
    st.lastError ? `${st.lastError.message} (${formatRelative(st.lastError.at)})` : 'none',
  ]);
  return facts(rows, { testid: `site-status-${s.name}` });
}

async function download(name: string, format: string): Promise<void> {
  const text = await api.siteRemoteConfig(name, format);
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const a = h('a', { href: url, download: `${name}-${format}.${format === 'swanctl' ? 'conf' : 'txt'}` });
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

export async function sitesPage(ctx: PageContext): Promise<void> {
  const listEl = h('div', { class: 'list' }, loading());
  const details = h('div', { class: 'list' });
  let editing: string | null = null;

  const input = (name: string, placeholder = '') =>
    h('input', {
      name,
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder,
      'data-field': name,
      testid: `site-${name}`,
    });
  const nameIn = input('name', 'hq');
  const remote = input('remoteAddress', '198.51.100.20 or %any');
  const localSubnets = input('localSubnets', '10.66.0.0/24');
  const remoteSubnets = input('remoteSubnets', '10.20.0.0/16');
  const psk = h('input', {
    name: 'psk',
    type: 'password',
    autocomplete: 'new-password',
    'data-field': 'psk',
    testid: 'site-psk',
  });
  const auth = select([
    ['psk', 'pre-shared key'],
    ['cert', 'certificates'],
  ]);
  auth.setAttribute('data-field', 'auth');
  const pemArea = (name: string, placeholder: string) =>
    h('textarea', {
      name,
      rows: 4,
      spellcheck: 'false',
      placeholder,
      'data-field': name,
      testid: `site-${name}`,
    });
  const certificate = pemArea('certificate', '-----BEGIN CERTIFICATE----- (ours, then intermediates)');
  const privateKey = pemArea('privateKey', '-----BEGIN PRIVATE KEY-----');
  const caCertificates = pemArea('caCertificates', "-----BEGIN CERTIFICATE----- (the peer's CA)");
  const certRow = h(
    'div',
    { class: 'row', hidden: true },
    field('Our certificate (PEM)', certificate, 'Followed by the intermediate CAs to send with it.'),
    field('Its private key (PEM)', privateKey, 'Never shown again; when editing, leave empty to keep it.'),
    field('Trusted CAs (PEM)', caCertificates, "The peer's certificate must chain to one of these."),
  );
  const showAuth = (): void => {
    certRow.hidden = auth.value !== 'cert';
    psk.disabled = auth.value === 'cert';
  };
  auth.addEventListener('change', showAuth);
  const localId = input('localId', 'fqdn:gw.example.net');
  const remoteId = input('remoteId');
  const ike = input('ikeProposals', 'default');
  const esp = input('espProposals', 'default');
  const dpd = input('dpdIntervalSec', '30');
  const mode = select([
    ['tunnel', 'tunnel'],
    ['transport', 'transport'],
  ]);
  const start = select([
    ['', 'default'],
    ['initiate', 'initiate'],
    ['wait', 'wait'],
    ['on-traffic', 'on traffic'],
  ]);
  const legacy = h('input', { name: 'allowLegacyGroups' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'site-submit' }, 'Add site');
  const cancel = h('button', { type: 'button', hidden: true }, 'Cancel edit');

  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Add or edit a site' },
    h(
      'div',
      { class: 'row' },
      field('Name', nameIn),
      field('Remote address', remote, 'The peer firewall, or %any to only answer.'),
      field('Authentication', auth),
      field('Pre-shared key', psk, 'Leave empty to generate one (or, when editing, to keep it).'),
    ),
    certRow,
    h(
      'div',
      { class: 'row' },
      field('Local subnets', localSubnets, 'Ours, separated by commas.'),
      field('Remote subnets', remoteSubnets, 'Behind the peer.'),
    ),
    h('div', { class: 'row' }, field('Local ID', localId), field('Remote ID', remoteId)),
    h(
      'div',
      { class: 'row' },
      field('IKE proposals', ike),
      field('ESP proposals', esp),
      field('DPD interval (s)', dpd),
      field('Mode', mode),
      field('Start', start),
    ),
    checkbox('Allow legacy DH groups (2, 5)', legacy),
    h('div', { class: 'actions' }, submit, cancel),
  );

  const resetForm = (): void => {
    editing = null;
    form.reset();
    nameIn.disabled = false;
    showAuth();
    submit.textContent = 'Add site';
    cancel.hidden = true;
  };
  cancel.addEventListener('click', resetForm);

  const edit = (s: Site): void => {
    editing = s.name;
    nameIn.value = s.name;
    nameIn.disabled = true;
    remote.value = s.remoteAddress ?? '%any';
    localSubnets.value = s.localSubnets.join(', ');
    remoteSubnets.value = s.remoteSubnets.join(', ');
    localId.value = s.localId ?? '';
    remoteId.value = s.remoteId ?? '';
    ike.value = s.ikeProposals.join(', ');
    esp.value = s.espProposals.join(', ');
    dpd.value = String(s.dpdIntervalSec);
    mode.value = s.mode;
    start.value = s.startAction;
    legacy.checked = s.allowLegacyGroups;
    psk.value = '';
    auth.value = s.auth;
    certificate.value = s.certificate ?? '';
    caCertificates.value = s.caCertificates ?? '';
    privateKey.value = '';
    showAuth();
    submit.textContent = `Save ${s.name}`;
    cancel.hidden = false;
    form.scrollIntoView();
  };

  const reload = async (): Promise<void> => {
    try {
      const sites = await api.listSites(ctx.signal);
      if (sites.length === 0) {
        replace(listEl, emptyState('No sites yet.', { testid: 'sites-empty' }));
        replace(details);
        return;
      }
      replace(
        listEl,
        table(
          [
            { title: 'Site', class: 'col-name', cell: (s) => h('code', null, s.name) },
            { title: 'Remote', cell: (s) => s.remoteAddress ?? '%any' },
            { title: 'Auth', cell: (s) => (s.auth === 'cert' ? 'certificates' : 'PSK') },
            {
              title: 'Subnets',
              class: 'col-grow',
              cell: (s) => `${s.localSubnets.join(', ')} ↔ ${s.remoteSubnets.join(', ')}`,
            },
            {
              title: 'State',
              cell: (s) =>
                h('span', { class: `badge state-${siteState(s).replace(' ', '-')}` }, siteState(s)),
            },
            {
              title: 'Actions',
              class: 'col-actions',
              cell: (s) => {
                const toggle = h(
                  'button',
                  { type: 'button', testid: `site-toggle-${s.name}` },
                  s.enabled ? 'Down' : 'Up',
                );
                toggle.addEventListener(
                  'click',
                  () =>
                    void busy(toggle, async () => {
                      try {
                        await api.setSiteEnabled(s.name, !s.enabled);
                        await reload();
                      } catch (err) {
                        showApiError(err);
                      }
                    }),
                );
                const editButton = h('button', { type: 'button' }, 'Edit');
                editButton.addEventListener('click', () => edit(s));
                const format = select([
                  ['swanctl', 'strongSwan'],
                  ['aws', 'AWS'],
                  ['pfsense', 'pfSense'],
                ]);
                const get = h('button', { type: 'button' }, 'Remote config');
                get.addEventListener(
                  'click',
                  () =>
                    void busy(get, async () => {
                      try {
                        await download(s.name, format.value);
                      } catch (err) {
                        showApiError(err);
                      }
                    }),
                );
                return h(
                  'div',
                  { class: 'actions' },
                  toggle,
                  editButton,
                  format,
                  get,
                  removeButton({
                    label: `Remove site ${s.name}`,
                    title: `Remove site ${s.name}?`,
                    message: 'Its tunnel goes down and its remote subnets stop being routed.',
                    confirm: 'Remove site',
                    remove: () => api.removeSite(s.name),
                    notice: `Site ${s.name} removed.`,
                    onNotice: showNotice,
                    after: reload,
                    onError: showApiError,
                  }),
                );
              },
            },
          ],
          sites,
          (s) => ({ testid: `site-row-${s.name}` }),
          'Sites',
        ),
      );
      replace(details, ...sites.map((s) => card(`${s.name}: security associations`, null, saDetail(s))));
    } catch (err) {
      showApiError(err);
    }
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const body: SiteInput = {
      remoteAddress: remote.value.trim() || '%any',
      localSubnets: list(localSubnets.value),
      remoteSubnets: list(remoteSubnets.value),
      localId: localId.value.trim() || null,
      remoteId: remoteId.value.trim() || null,
      mode: mode.value,
      allowLegacyGroups: legacy.checked,
      auth: auth.value,
      ...(auth.value === 'psk' && psk.value ? { psk: psk.value } : {}),
      ...(auth.value === 'cert'
        ? {
            certificate: certificate.value,
            caCertificates: caCertificates.value,
            ...(privateKey.value ? { privateKey: privateKey.value } : {}),
          }
        : {}),
      ...(list(ike.value).length > 0 ? { ikeProposals: list(ike.value) } : {}),
      ...(list(esp.value).length > 0 ? { espProposals: list(esp.value) } : {}),
      ...(dpd.value.trim() ? { dpdIntervalSec: Number(dpd.value.trim()) } : {}),
      ...(start.value ? { startAction: start.value } : {}),
    };
    void busy(submit, async () => {
      try {
        if (editing !== null) {
          const s = await api.updateSite(editing, body);
          showNotice(`Site ${s.name} saved.`);
        } else {
          const s = await api.addSite({ name: nameIn.value.trim(), ...body });
          showNotice(
            `Site ${s.name} added.`,
            ...(s.psk ? [' Its generated pre-shared key (shown once): ', h('code', null, s.psk)] : []),
          );
        }
        resetForm();
        await reload();
      } catch (err) {
        showApiError(err, form);
      }
    });
  });

  ctx.main.append(
    pageHeader('Sites'),
    card(
      'IPsec sites',
      null,
      h('p', { class: 'hint' }, 'Tunnels to the firewalls of other sites and clouds, with their live state.'),
      listEl,
    ),
    details,
    card('Add or edit a site', null, form),
  );
  every(ctx, REFRESH_MS, () => void reload());
  await reload();
}
