/**
 * The console's entry point. What happens, in order:
 *   1. ask the API for the current session (a page reload keeps the cookie);
 *   2. render the page the URL's hash names, or the login page when there is no session (remembering
 *      where the admin was going);
 *   3. on every hash change, abort the previous page's requests and timers and render the next one;
 *   4. whenever any call answers 401, forget the session and show the login page.
 */
import * as api from './api.js';
import { bannerHost, setBannerHost } from './banner.js';
import { h, replace } from './dom.js';
import { showApiError } from './form-errors.js';
import { ApiError, setSessionRefresher, setUnauthorizedHandler } from './http.js';
import { buildShell, type Shell } from './layout.js';
import type { PageContext } from './page.js';
import { auditPage } from './pages/audit.js';
import { dashboardPage } from './pages/dashboard.js';
import { groupsPage } from './pages/groups.js';
import { loginPage } from './pages/login.js';
import { memberPage } from './pages/member.js';
import { membersPage } from './pages/members.js';
import { policiesPage } from './pages/policies.js';
import { routesPage } from './pages/routes.js';
import { multicastPage } from './pages/multicast.js';
import { gatewaysPage } from './pages/gateways.js';
import { sitesPage } from './pages/sites.js';
import { settingsPage } from './pages/settings.js';
import { currentRoute, hashOf, navigate, onRouteChange, type Route } from './router.js';
import { currentSession, setCurrentSession } from './session.js';
import type { Session } from './types.js';

const root = document.getElementById('app') ?? document.body;
let shell: Shell | null = null;
let leave: AbortController | null = null;
/** Where to go after logging in (the page the admin asked for before the session was found missing). */
let returnTo: Route | null = null;

function renderPage(ctx: PageContext, route: Route): Promise<void> | void {
  switch (route.page) {
    case 'dashboard':
      return dashboardPage(ctx);
    case 'members':
      return membersPage(ctx);
    case 'member':
      return memberPage(ctx, route.name);
    case 'groups':
      return groupsPage(ctx);
    case 'policies':
      return policiesPage(ctx);
    case 'routes':
      return routesPage(ctx);
    case 'sites':
      return sitesPage(ctx);
    case 'multicast':
      return multicastPage(ctx);
    case 'gateways':
      return gatewaysPage(ctx);
    case 'settings':
      return settingsPage(ctx);
    case 'audit':
      return auditPage(ctx);
    case 'login':
      return;
  }
}

function showLogin(): void {
  shell = null;
  document.title = 'Log in · Weft';
  if (window.location.hash !== '#/login') window.history.replaceState(null, '', '#/login');
  loginPage(root, leave?.signal, (session: Session) => {
    setCurrentSession(session);
    const target = returnTo ?? { page: 'dashboard' };
    returnTo = null;
    navigate(target);
  });
}

function render(route: Route): void {
  leave?.abort();
  leave = new AbortController();
  const session = currentSession();
  if (session === null) {
    if (route.page !== 'login') returnTo = route;
    showLogin();
    return;
  }
  if (route.page === 'login') {
    navigate({ page: 'dashboard' });
    return;
  }
  if (shell === null) {
    shell = buildShell(session.username, () => void logout());
    replace(root, shell.root);
  }
  shell.setActive(route.page);
  const banner = bannerHost();
  const page = h('div', { class: `page page-${route.page}` });
  replace(shell.main, banner, page);
  setBannerHost(banner);
  window.scrollTo(0, 0);
  const ctx: PageContext = { main: page, signal: leave.signal };
  Promise.resolve()
    .then(() => renderPage(ctx, route))
    .catch((err: unknown) => showApiError(err));
}

async function logout(): Promise<void> {
  try {
    await api.logout();
  } catch {
    // The session may be gone already; either way this browser forgets it.
  }
  setCurrentSession(null);
  returnTo = null;
  render({ page: 'login' });
}

function sessionLost(): void {
  if (currentSession() === null) return;
  setCurrentSession(null);
  const route = currentRoute();
  if (route.page !== 'login') returnTo = route;
  render({ page: 'login' });
}

async function start(): Promise<void> {
  setUnauthorizedHandler(sessionLost);
  setSessionRefresher(async () => {
    try {
      setCurrentSession(await api.getSession());
    } catch {
      sessionLost();
    }
  });
  onRouteChange(render);
  try {
    setCurrentSession(await api.getSession());
  } catch (err) {
    setCurrentSession(null);
    if (!(err instanceof ApiError && err.status === 401)) {
      render(currentRoute());
      showApiError(err);
      return;
    }
  }
  const route = currentRoute();
  // A first visit has no hash: give it one, so the address bar says where the admin is.
  if (window.location.hash === '' && currentSession() !== null)
    window.history.replaceState(null, '', hashOf(route));
  render(route);
}

void start();
