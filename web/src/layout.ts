/**
 * The frame around every page once logged in: a sidebar with the navigation on a desktop; on a phone the
 * same element is a compact top bar whose "Menu" button opens the navigation below it (CSS decides which,
 * by width). The logout button stays visible in both.
 */
import { h } from './dom.js';
import type { PageName } from './router.js';

export const NAV: readonly (readonly [Exclude<PageName, 'login' | 'member'>, string])[] = [
  ['dashboard', 'Dashboard'],
  ['members', 'Members'],
  ['groups', 'Groups'],
  ['policies', 'Policies'],
  ['routes', 'Routes'],
  ['sites', 'Sites'],
  ['multicast', 'Multicast'],
  ['gateways', 'Gateways'],
  ['settings', 'Settings'],
  ['audit', 'Audit log'],
];

export interface Shell {
  readonly root: HTMLElement;
  /** Where pages render. */
  readonly main: HTMLElement;
  /** Marks the current page in the navigation and closes the phone menu. */
  setActive(page: PageName): void;
}

export function buildShell(username: string, onLogout: () => void): Shell {
  const links = NAV.map(([page, text]) =>
    h('a', { href: `#/${page}`, testid: `nav-${page}`, 'data-page': page }, text),
  );
  const nav = h(
    'nav',
    { id: 'main-nav', class: 'nav', 'aria-label': 'Main' },
    h('ul', null, ...links.map((a) => h('li', null, a))),
  );
  const toggle = h(
    'button',
    {
      type: 'button',
      class: 'menu-toggle',
      'aria-expanded': 'false',
      'aria-controls': 'main-nav',
      testid: 'nav-menu',
    },
    h('span', { class: 'menu-icon', 'aria-hidden': 'true' }),
    'Menu',
  );
  const setOpen = (open: boolean): void => {
    toggle.setAttribute('aria-expanded', String(open));
    nav.classList.toggle('open', open);
  };
  toggle.addEventListener('click', () => setOpen(toggle.getAttribute('aria-expanded') !== 'true'));

  const logout = h('button', { type: 'button', class: 'logout', testid: 'logout' }, 'Log out');
  logout.addEventListener('click', onLogout);

  const sidebar = h(
    'header',
    { class: 'sidebar' },
    h(
      'a',
      { class: 'brand', href: '#/dashboard' },
      h('span', { class: 'brand-mark', 'aria-hidden': 'true' }),
      'Weft',
    ),
    toggle,
    nav,
    h(
      'div',
      { class: 'account' },
      h('span', { class: 'account-name', title: 'Signed in as' }, username),
      logout,
    ),
  );
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  const root = h(
    'div',
    { class: 'shell' },
    h('a', { class: 'skip-link', href: '#main' }, 'Skip to content'),
    sidebar,
    main,
  );
  // The skip link must not change the route: move focus instead.
  root.querySelector('.skip-link')?.addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
  });

  return {
    root,
    main,
    setActive(page) {
      const current = page === 'member' ? 'members' : page;
      for (const a of links) {
        if (a.dataset['page'] === current) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
      }
      setOpen(false);
    },
  };
}
