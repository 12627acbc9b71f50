/**
 * Sites: IPsec tunnels to the firewalls of other sites and clouds. The list shows each site's live state (as
 * the gateway last reported it, refreshed every few seconds) with its IKE SA and each CHILD SA; a form adds a
 * site or edits one (every field of the API; the rarely changed ones in a collapsed Advanced section, mapped to
 * the API's body by form-values.ts); each row has up/down, remove and the remote-end config for download.
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { removeButton } from '../confirm.js';
import { h, replace, type Props } from '../dom.js';
import { clearFieldErrors, showApiError, showFieldError } from '../form-errors.js';
import {
  advancedCustomised,
  EMPTY_SITE_FORM,
  SITE_FORM_DEFAULTS,
  siteBody,
  siteFormValues,
  type SiteFormValues,
} from '../form-values.js';
import { formatBytes, formatRelative } from '../format.js';
import { gatewayNames, gatewaySelect, servedBy, setGatewayOptions } from '../gateway-picker.js';
import { every, type PageContext } from '../page.js';
import type { Site, SiteInput } from '../types.js';
import { busy, card, checkbox, emptyState, facts, field, loading, pageHeader, select, table } from '../ui.js';

const REFRESH_MS = 5000;

function siteState(s: Site): string {
  if (!s.enabled) return 'disabled';
  return s.status?.state ?? 'no status';
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

  const input = (name: keyof SiteFormValues, placeholder = '', props: Props = {}) =>
    h('input', {
      name,
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder,
      'data-field': name,
      testid: `site-${name}`,
      ...props,
    });
  /** A number field: text with a numeric keyboard, so that what is typed reaches the check as typed. */
  const number = (name: keyof SiteFormValues, placeholder: string) =>
    input(name, placeholder, { inputmode: 'numeric' });
  const choice = (name: keyof SiteFormValues, options: readonly (readonly [string, string])[]) =>
    select(options, { name, 'data-field': name, testid: `site-${name}` });
  const tick = (name: keyof SiteFormValues) =>
    h('input', { name, 'data-field': name, testid: `site-${name}` });

  const nameIn = input('name', 'hq');
  const remote = input('remoteAddress', '198.51.100.20; empty: %any');
  const localSubnets = input('localSubnets', '10.66.0.0/24');
  const remoteSubnets = input('remoteSubnets', '10.20.0.0/16');
  const psk = h('input', {
    name: 'psk',
    type: 'password',
    autocomplete: 'new-password',
    'data-field': 'psk',
    testid: 'site-psk',
  });
  const auth = choice('auth', [
    ['psk', 'pre-shared key'],
    ['cert', 'certificates'],
  ]);
  const pemArea = (name: keyof SiteFormValues, placeholder: string) =>
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
  const gateway = gatewaySelect('site-gateway');
  let registered: string[] = [];
  const localId = input('localId', 'fqdn:gw.example.net');
  const remoteId = input('remoteId');

  // ---- Advanced: every other field of the API; empty means the default (shown as the placeholder) ----
  const D = SITE_FORM_DEFAULTS;
  const ike = input('ikeProposals', D.ikeProposals.join(', '));
  const esp = input('espProposals', D.espProposals.join(', '));
  const legacy = tick('allowLegacyGroups');
  const ikeLife = number('ikeLifetimeSec', String(D.ikeLifetimeSec));
  const childLife = number('childLifetimeSec', String(D.childLifetimeSec));
  const ikeHard = number('ikeHardLifetimeSec', '110% of the rekey time');
  const childHard = number('childHardLifetimeSec', '110% of the rekey time');
  const rekeyBytes = number('childRekeyBytes', '0 (no limit)');
  const lifeBytes = number('childLifeBytes', '0 (no limit)');
  const mode = choice('mode', [
    ['', `default (${D.mode})`],
    ['tunnel', 'tunnel'],
    ['transport', 'transport'],
  ]);
  const start = choice('startAction', [
    ['', 'default'],
    ['initiate', 'initiate'],
    ['wait', 'wait'],
    ['on-traffic', 'on traffic'],
  ]);
  const dpd = number('dpdIntervalSec', String(D.dpdIntervalSec));
  const dpdAction = choice('dpdAction', [
    ['', `default (${D.dpdAction})`],
    ['restart', 'restart'],
    ['clear', 'clear'],
    ['hold', 'hold'],
  ]);
  const fragment = number('fragmentSize', String(D.fragmentSize));
  const perPair = tick('childPerSubnetPair');
  const shortPsk = tick('forceShortPsk');
  const groups = input('groups', 'none');
  const multicast = input('multicast', 'none, e.g. 239.0.0.0/8');

  const advanced = h(
    'details',
    { class: 'advanced', testid: 'site-advanced' },
    h('summary', { testid: 'site-advanced-toggle' }, 'Advanced'),
    h(
      'div',
      { class: 'advanced-body' },
      h('p', { class: 'hint' }, 'Empty fields take the default shown in them.'),
      h('h3', null, 'Proposals'),
      h(
        'div',
        { class: 'row' },
        field('IKE proposals', ike, 'In order of preference, separated by commas.', { class: 'grow' }),
        field('ESP proposals', esp, 'A DH group in one means PFS on rekeys.', { class: 'grow' }),
      ),
      checkbox('Allow legacy DH groups (2, 5)', legacy),
      h('h3', null, 'Lifetimes'),
      h(
        'div',
        { class: 'row' },
        field('IKE SA rekey (s)', ikeLife, 'At least the CHILD SA’s.'),
        field('IKE SA hard lifetime (s)', ikeHard, 'Deleted then even if the rekey failed.'),
        field('CHILD SA rekey (s)', childLife),
        field('CHILD SA hard lifetime (s)', childHard, '≥ 60 s beyond the rekey time.'),
      ),
      h(
        'div',
        { class: 'row' },
        field('CHILD SA rekey after (bytes)', rekeyBytes, '0: no limit; else at least 1048576.'),
        field('CHILD SA deleted after (bytes)', lifeBytes, 'More than the rekey bytes; 0: no limit.'),
      ),
      h('h3', null, 'Connection'),
      h(
        'div',
        { class: 'row' },
        field('Mode', mode),
        field('Start', start, 'Default: initiate; with %any, wait.'),
        field('DPD interval (s)', dpd, '0: no liveness checks.'),
        field('DPD action', dpdAction, 'When the peer stops answering.'),
        field('IKE fragment size (bytes)', fragment, '576 to 9000 (RFC 7383).'),
      ),
      h(
        'div',
        { class: 'checks' },
        checkbox('One CHILD SA per subnet pair (as initiator)', perPair),
        checkbox('Accept a pre-shared key under 20 characters', shortPsk),
      ),
      h('h3', null, 'Policy and multicast'),
      h(
        'div',
        { class: 'row' },
        field('Policy groups', groups, 'What the site sends is checked against their policies.', {
          class: 'grow',
        }),
        field('Multicast ranges', multicast, 'Groups the site sends and receives (tunnel mode).', {
          class: 'grow',
        }),
      ),
    ),
  );

  const submit = h('button', { type: 'submit', class: 'primary', testid: 'site-submit' }, 'Add site');
  const cancel = h('button', { type: 'button', hidden: true }, 'Cancel edit');

  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Add or edit a site' },
    h(
      'div',
      { class: 'row' },
      field('Name', nameIn),
      field('Remote address', remote, 'The peer firewall; empty or %any to only answer.'),
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
    h(
      'div',
      { class: 'row' },
      field('Local ID', localId),
      field('Remote ID', remoteId),
      field('Served by', gateway, 'With several gateways: the one that runs IKE with the peer.'),
    ),
    advanced,
    h('div', { class: 'actions' }, submit, cancel),
  );

  const texts = {
    name: nameIn,
    remoteAddress: remote,
    auth,
    psk,
    certificate,
    privateKey,
    caCertificates,
    localSubnets,
    remoteSubnets,
    localId,
    remoteId,
    gateway,
    mode,
    ikeProposals: ike,
    espProposals: esp,
    ikeLifetimeSec: ikeLife,
    childLifetimeSec: childLife,
    ikeHardLifetimeSec: ikeHard,
    childHardLifetimeSec: childHard,
    childRekeyBytes: rekeyBytes,
    childLifeBytes: lifeBytes,
    fragmentSize: fragment,
    dpdIntervalSec: dpd,
    dpdAction,
    startAction: start,
    groups,
    multicast,
  } satisfies Record<string, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>;
  const ticks = {
    allowLegacyGroups: legacy,
    forceShortPsk: shortPsk,
    childPerSubnetPair: perPair,
  } satisfies Record<string, HTMLInputElement>;

  const readForm = (): SiteFormValues => {
    const v: SiteFormValues = { ...EMPTY_SITE_FORM };
    for (const [k, el] of Object.entries(texts)) (v as unknown as Record<string, string>)[k] = el.value;
    for (const [k, el] of Object.entries(ticks)) (v as unknown as Record<string, boolean>)[k] = el.checked;
    return v;
  };
  const fillForm = (v: SiteFormValues): void => {
    setGatewayOptions(gateway, registered, v.gateway);
    for (const [k, el] of Object.entries(texts)) el.value = (v as unknown as Record<string, string>)[k] ?? '';
    for (const [k, el] of Object.entries(ticks))
      el.checked = (v as unknown as Record<string, boolean>)[k] ?? false;
  };

  const resetForm = (): void => {
    editing = null;
    form.reset();
    setGatewayOptions(gateway, registered, '');
    nameIn.disabled = false;
    showAuth();
    submit.textContent = 'Add site';
    cancel.hidden = true;
  };
  cancel.addEventListener('click', resetForm);

  const edit = (s: Site): void => {
    editing = s.name;
    const values = siteFormValues(s);
    fillForm(values);
    nameIn.disabled = true;
    advanced.open = advancedCustomised(values);
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
            { title: 'Served by', cell: (s) => servedBy(s.gateway) },
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
                const editButton = h('button', { type: 'button', testid: `site-edit-${s.name}` }, 'Edit');
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
    const result = siteBody(readForm(), editing === null ? 'add' : 'edit');
    if (!result.ok) {
      for (const issue of [...result.issues].reverse()) showFieldError(form, issue.field, issue.message);
      return;
    }
    const body = result.body as SiteInput;
    void busy(submit, async () => {
      try {
        if (editing !== null) {
          const s = await api.updateSite(editing, body);
          showNotice(`Site ${s.name} saved.`);
        } else {
          const s = await api.addSite(body);
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
  const loadGateways = async (): Promise<void> => {
    try {
      registered = await gatewayNames(ctx.signal);
      setGatewayOptions(gateway, registered, gateway.value);
    } catch (err) {
      showApiError(err);
    }
  };
  await Promise.all([reload(), loadGateways()]);
}
