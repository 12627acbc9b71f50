/**
 * Hash routing: the page is named by the URL's fragment (`#/members/alice`), so the server serves one
 * index.html and never needs a fallback route.
 */

export type Route =
  | { readonly page: 'login' }
  | { readonly page: 'dashboard' }
  | { readonly page: 'members' }
  | { readonly page: 'member'; readonly name: string }
  | { readonly page: 'groups' }
  | { readonly page: 'policies' }
  | { readonly page: 'routes' }
  | { readonly page: 'sites' }
  | { readonly page: 'multicast' }
  | { readonly page: 'gateways' }
  | { readonly page: 'settings' }
  | { readonly page: 'audit' };

export type PageName = Route['page'];

const SIMPLE: readonly PageName[] = [
  'login',
  'dashboard',
  'members',
  'groups',
  'policies',
  'routes',
  'sites',
  'multicast',
  'gateways',
  'settings',
  'audit',
];

/** The route a hash names; anything unknown is the dashboard. */
export function parseHash(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const [first, second] = parts;
  if (first === 'members' && second !== undefined) {
    let name = second;
    try {
      name = decodeURIComponent(second);
    } catch {
      // A malformed escape: use the text as it is; the API will say it does not exist.
    }
    return { page: 'member', name };
  }
  const page = SIMPLE.find((p) => p === first);
  return page === undefined ? { page: 'dashboard' } : ({ page } as Route);
}

export function hashOf(route: Route): string {
  return route.page === 'member' ? `#/members/${encodeURIComponent(route.name)}` : `#/${route.page}`;
}

export function currentRoute(): Route {
  return parseHash(window.location.hash);
}

/** Goes to a route; the hashchange listener renders it. */
export function navigate(route: Route): void {
  const hash = hashOf(route);
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else window.location.hash = hash;
}

export function onRouteChange(listener: (route: Route) => void): void {
  window.addEventListener('hashchange', () => listener(currentRoute()));
}
