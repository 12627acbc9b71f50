/**
 * The page-wide message line under the page's heading: an error the API sent that belongs to no form field
 * (role="alert", data-testid="error-banner"), or a short notice that something was done (role="status").
 */
import { h, replace, type Child } from './dom.js';

let host: HTMLElement | null = null;
let noticeTimer: number | undefined;
let flash: Child[] | null = null;

/** Where messages appear; each page render makes a new one, and shows a notice left for it by `flashNotice`. */
export function setBannerHost(el: HTMLElement | null): void {
  host = el;
  window.clearTimeout(noticeTimer);
  if (el && flash) {
    const message = flash;
    flash = null;
    showNotice(...message);
  }
}

/** A notice for the next page (after an action that navigates: "alice removed"). */
export function flashNotice(...message: Child[]): void {
  flash = message;
}

export function bannerHost(): HTMLElement {
  return h('div', { class: 'banner-host' });
}

export function clearBanner(): void {
  window.clearTimeout(noticeTimer);
  if (host) replace(host);
}

export function showError(message: string): void {
  if (!host) return;
  window.clearTimeout(noticeTimer);
  // The × is drawn by CSS, so the banner's text is the message alone.
  const close = h('button', { type: 'button', class: 'banner-close', 'aria-label': 'Dismiss' });
  close.addEventListener('click', () => clearBanner());
  replace(
    host,
    h(
      'div',
      { class: 'banner banner-error', role: 'alert', testid: 'error-banner' },
      h('span', { class: 'banner-text' }, message),
      close,
    ),
  );
  host.scrollIntoView({ block: 'nearest' });
}

export function showNotice(...message: Child[]): void {
  if (!host) return;
  window.clearTimeout(noticeTimer);
  replace(host, h('div', { class: 'banner banner-notice', role: 'status', testid: 'notice' }, ...message));
  noticeTimer = window.setTimeout(() => clearBanner(), 8000);
}
