/**
 * The login page: username and password, and a TOTP code field once the API answers
 * WEFT_ERR_TOTP_REQUIRED. Too many failed attempts (429) disable the form for the time Retry-After says.
 */
import * as api from '../api.js';
import { bannerHost, clearBanner, setBannerHost, showError, showNotice } from '../banner.js';
import { h, replace } from '../dom.js';
import { ApiError, isAbort } from '../http.js';
import type { Session } from '../types.js';
import { field } from '../ui.js';

function waitText(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return s === 0 ? `${m} min` : `${m} min ${s} s`;
}

export function loginPage(
  root: HTMLElement,
  signal: AbortSignal | undefined,
  onLoggedIn: (session: Session) => void,
): void {
  const username = h('input', {
    name: 'username',
    type: 'text',
    value: 'admin',
    autocomplete: 'username',
    autocapitalize: 'none',
    spellcheck: 'false',
    required: true,
    testid: 'login-username',
  });
  const password = h('input', {
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    testid: 'login-password',
  });
  const totp = h('input', {
    name: 'totp',
    type: 'text',
    inputmode: 'numeric',
    autocomplete: 'one-time-code',
    pattern: '[0-9]{6}',
    maxlength: 6,
    testid: 'login-totp',
  });
  const totpField = field('Authentication code', totp, 'The 6-digit code from your authenticator app.', {
    class: 'hidden',
  });
  const submit = h('button', { type: 'submit', class: 'primary wide', testid: 'login-submit' }, 'Log in');
  const banner = bannerHost();
  const form = h(
    'form',
    { class: 'login-form', novalidate: true },
    banner,
    field('Username', username),
    field('Password', password),
    totpField,
    submit,
  );
  const page = h(
    'main',
    { class: 'login' },
    h(
      'div',
      { class: 'login-card' },
      h('div', { class: 'login-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Weft'),
      h('h1', null, 'Log in'),
      h('p', { class: 'muted' }, 'The people VPN console.'),
      form,
    ),
  );
  replace(root, page);
  setBannerHost(banner);
  (username.value ? password : username).focus();

  let waitTimer: number | undefined;
  signal?.addEventListener('abort', () => window.clearInterval(waitTimer), { once: true });
  const rateLimited = (seconds: number): void => {
    let left = seconds;
    submit.disabled = true;
    const tick = (): void => {
      if (left <= 0) {
        window.clearInterval(waitTimer);
        submit.disabled = false;
        clearBanner();
        return;
      }
      showError(`Too many failed attempts. Try again in ${waitText(left)}.`);
      left -= 1;
    };
    tick();
    window.clearInterval(waitTimer);
    waitTimer = window.setInterval(tick, 1000);
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (submit.disabled) return;
    clearBanner();
    if (!username.value.trim() || !password.value) {
      showError('Enter your username and password.');
      (username.value.trim() ? password : username).focus();
      return;
    }
    const code = totp.value.replace(/\s+/g, '');
    const totpShown = !totpField.classList.contains('hidden');
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    api
      .login({
        username: username.value.trim(),
        password: password.value,
        ...(totpShown && code ? { totp: code } : {}),
      })
      .then(
        (session) => onLoggedIn(session),
        (err: unknown) => {
          submit.disabled = false;
          if (isAbort(err)) return;
          if (!(err instanceof ApiError)) {
            showError(String(err));
            return;
          }
          switch (err.code) {
            case 'WEFT_ERR_TOTP_REQUIRED':
              if (!totpShown || !code) {
                totpField.classList.remove('hidden');
                showNotice('Two-factor authentication is on: enter the code from your authenticator app.');
              } else {
                showError(`That code is not right: ${err.message}`);
                totp.select();
              }
              totp.focus();
              return;
            case 'WEFT_ERR_UNAUTHORIZED':
              showError('Wrong username or password.');
              password.select();
              password.focus();
              return;
            case 'WEFT_ERR_RATE_LIMITED':
              rateLimited(err.retryAfterSeconds ?? 60);
              return;
            default:
              showError(err.message);
          }
        },
      )
      .finally(() => submit.removeAttribute('aria-busy'));
  });
}
