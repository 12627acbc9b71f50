/**
 * Settings: the network's settings (PATCH /settings, only what changed), the admin's password, and TOTP
 * two-factor authentication (enrol with a QR code and a confirming code; turn off with a code).
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { copyButton } from '../clipboard.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError, showFieldError } from '../form-errors.js';
import type { PageContext } from '../page.js';
import { currentSession, setCurrentSession, setTotpEnabled } from '../session.js';
import type { PolicyAction, Settings, SettingsPatch } from '../types.js';
import { busy, card, facts, field, loading, pageHeader, select } from '../ui.js';

function splitList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function settingsForm(initial: Settings): HTMLElement {
  let current = initial;
  const endpoint = h('input', {
    name: 'endpoint',
    value: current.endpoint,
    autocomplete: 'off',
    spellcheck: 'false',
    'data-field': 'endpoint',
    testid: 'settings-endpoint',
  });
  const dns = h('input', {
    name: 'dns',
    value: current.dns.join(', '),
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: '10.20.0.2, 1.1.1.1',
    'data-field': 'dns',
    testid: 'settings-dns',
  });
  const nat = h('input', {
    name: 'natEgress',
    value: current.natEgress ?? '',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'eth0',
    'data-field': 'natEgress',
    testid: 'settings-nat-egress',
  });
  const policy = select(
    [
      ['deny', 'deny — only what a rule allows'],
      ['allow', 'allow — everything no rule denies'],
    ],
    { name: 'defaultPolicy', 'data-field': 'defaultPolicy', testid: 'settings-default-policy' },
  );
  policy.value = current.defaultPolicy;
  const keepalive = h('input', {
    name: 'persistentKeepalive',
    type: 'number',
    min: 0,
    max: 65535,
    step: 1,
    value: current.persistentKeepalive,
    'data-field': 'persistentKeepalive',
    testid: 'settings-keepalive',
  });
  const mtu = h('input', {
    name: 'mtu',
    type: 'number',
    min: 576,
    max: 65535,
    step: 1,
    value: current.mtu,
    'data-field': 'mtu',
    testid: 'settings-mtu',
  });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'settings-save' }, 'Save settings');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Network settings' },
    h(
      'div',
      { class: 'row' },
      field('Endpoint', endpoint, 'HOST[:PORT] that members dial.', { class: 'grow' }),
      field('DNS servers', dns, 'Pushed to members; separate with commas.', { class: 'grow' }),
    ),
    h(
      'div',
      { class: 'row' },
      field('NAT egress interface', nat, 'Masquerade members’ traffic leaving here; empty: no NAT.'),
      field('Default policy', policy),
    ),
    h(
      'div',
      { class: 'row' },
      field('Persistent keepalive (s)', keepalive, '0: off.'),
      field('MTU', mtu, 'Takes effect on the next start.'),
    ),
    h('div', { class: 'actions' }, save),
  );

  const int = (input: HTMLInputElement, name: string): number | null => {
    const n = Number(input.value);
    if (input.value.trim() === '' || !Number.isInteger(n)) {
      showFieldError(form, name, `${name}: must be a whole number`);
      return null;
    }
    return n;
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const ka = int(keepalive, 'persistentKeepalive');
    const m = int(mtu, 'mtu');
    if (ka === null || m === null) return;
    const patch: SettingsPatch = {};
    if (endpoint.value.trim() !== current.endpoint) patch.endpoint = endpoint.value.trim();
    const dnsList = splitList(dns.value);
    if (!sameList(dnsList, current.dns)) patch.dns = dnsList;
    const natValue = nat.value.trim() || null;
    if (natValue !== current.natEgress) patch.natEgress = natValue;
    if (policy.value !== current.defaultPolicy) patch.defaultPolicy = policy.value as PolicyAction;
    if (ka !== current.persistentKeepalive) patch.persistentKeepalive = ka;
    if (m !== current.mtu) patch.mtu = m;
    if (Object.keys(patch).length === 0) {
      showNotice('Nothing changed.');
      return;
    }
    void busy(save, async () => {
      try {
        current = await api.updateSettings(patch);
        dns.value = current.dns.join(', ');
        showNotice('Settings saved.');
      } catch (err) {
        showApiError(err, form);
      }
    });
  });

  return h(
    'div',
    null,
    facts(
      [
        ['Member subnet', [current.subnet, current.subnet6].filter(Boolean).join(', ')],
        ['Interface', current.interfaceName],
        ['Listen port', `UDP ${current.listenPort}`],
        ['API address', current.apiListen],
      ],
      { class: 'facts-inline' },
    ),
    form,
  );
}

function passwordForm(): HTMLFormElement {
  const current = h('input', {
    name: 'current',
    type: 'password',
    autocomplete: 'current-password',
    'data-field': 'current',
    testid: 'password-current',
  });
  const next = h('input', {
    name: 'next',
    type: 'password',
    autocomplete: 'new-password',
    minlength: 12,
    'data-field': 'next',
    testid: 'password-next',
  });
  const repeat = h('input', {
    name: 'repeat',
    type: 'password',
    autocomplete: 'new-password',
    'data-field': 'repeat',
    testid: 'password-repeat',
  });
  const submit = h(
    'button',
    { type: 'submit', class: 'primary', testid: 'password-submit' },
    'Change password',
  );
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Change password' },
    h('input', {
      type: 'text',
      name: 'username',
      autocomplete: 'username',
      value: currentSession()?.username ?? 'admin',
      hidden: true,
    }),
    h(
      'div',
      { class: 'row' },
      field('Current password', current),
      field('New password', next, 'At least 12 characters.'),
      field('Repeat new password', repeat),
    ),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    if (next.value.length < 12) {
      showFieldError(form, 'next', 'next: must be at least 12 characters');
      return;
    }
    if (next.value !== repeat.value) {
      showFieldError(form, 'repeat', 'The two new passwords differ.');
      return;
    }
    void busy(submit, async () => {
      try {
        await api.changePassword(current.value, next.value);
        form.reset();
        showNotice('Password changed.');
      } catch (err) {
        showApiError(err, form);
      }
    });
  });
  return form;
}

function codeInput(testid: string): HTMLInputElement {
  return h('input', {
    name: 'code',
    inputmode: 'numeric',
    autocomplete: 'one-time-code',
    pattern: '[0-9]{6}',
    maxlength: 6,
    'data-field': 'code',
    testid,
  });
}

function totpSection(box: HTMLElement): void {
  const enabled = currentSession()?.totpEnabled ?? false;
  if (enabled) {
    const code = codeInput('totp-disable-code');
    const submit = h('button', { type: 'submit', class: 'danger', testid: 'totp-disable' }, 'Turn off');
    const form = h(
      'form',
      { class: 'form inline-form', novalidate: true, 'aria-label': 'Turn off two-factor authentication' },
      field('Current code', code),
      h('div', { class: 'actions' }, submit),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      void busy(submit, async () => {
        try {
          const r = await api.disableTotp(code.value.trim());
          setTotpEnabled(r.totpEnabled);
          showNotice('Two-factor authentication is off.');
          totpSection(box);
        } catch (err) {
          showApiError(err, form);
        }
      });
    });
    replace(
      box,
      h(
        'p',
        { testid: 'totp-state' },
        h('span', { class: 'badge state-enabled' }, 'on'),
        ' Logging in asks for a code from your authenticator app.',
      ),
      form,
    );
    return;
  }

  const start = h('button', { type: 'button', class: 'primary', testid: 'totp-start' }, 'Set up');
  const enrol = h('div', { class: 'enrol' });
  start.addEventListener('click', () => {
    void busy(start, async () => {
      try {
        const t = await api.startTotp();
        const secret = h('code', { class: 'key', testid: 'totp-secret' }, t.secret);
        const code = codeInput('totp-code');
        const confirm = h('button', { type: 'submit', class: 'primary', testid: 'totp-confirm' }, 'Confirm');
        const form = h(
          'form',
          { class: 'form inline-form', novalidate: true, 'aria-label': 'Confirm two-factor authentication' },
          field('Code from the app', code),
          h('div', { class: 'actions' }, confirm),
        );
        form.addEventListener('submit', (e) => {
          e.preventDefault();
          clearFieldErrors(form);
          void busy(confirm, async () => {
            try {
              const r = await api.confirmTotp(code.value.trim());
              setTotpEnabled(r.totpEnabled);
              showNotice('Two-factor authentication is on.');
              totpSection(box);
            } catch (err) {
              showApiError(err, form);
            }
          });
        });
        replace(
          enrol,
          h(
            'div',
            { class: 'enrol-grid' },
            h('img', {
              src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(t.qrSvg)}`,
              alt: 'QR code to add Weft to an authenticator app',
              width: 200,
              height: 200,
              class: 'totp-qr',
              testid: 'totp-qr',
            }),
            h(
              'div',
              null,
              h('p', null, '1. Scan the code with an authenticator app, or type in this secret:'),
              h('p', { class: 'with-copy' }, secret, copyButton(secret)),
              h('p', null, '2. Enter the 6-digit code it shows to finish.'),
              form,
            ),
          ),
        );
        start.classList.add('hidden');
        code.focus();
      } catch (err) {
        showApiError(err);
      }
    });
  });
  replace(
    box,
    h(
      'p',
      { testid: 'totp-state' },
      h('span', { class: 'badge state-disabled' }, 'off'),
      ' Add a second step to logging in: a 6-digit code from an authenticator app (RFC 6238).',
    ),
    start,
    enrol,
  );
}

export async function settingsPage(ctx: PageContext): Promise<void> {
  const network = h('div', null, loading());
  const totp = h('div', { class: 'totp' });
  ctx.main.append(
    pageHeader('Settings'),
    card('Network', { testid: 'settings-network' }, network),
    card('Password', { testid: 'settings-password' }, passwordForm()),
    card('Two-factor authentication', { testid: 'settings-totp' }, totp),
  );
  totpSection(totp);
  const [settings, session] = await Promise.allSettled([
    api.getSettings(ctx.signal),
    api.getSession(ctx.signal),
  ]);
  if (session.status === 'fulfilled') {
    setCurrentSession(session.value);
    totpSection(totp);
  }
  if (settings.status === 'fulfilled') replace(network, settingsForm(settings.value));
  else {
    replace(network);
    showApiError(settings.reason);
  }
}
