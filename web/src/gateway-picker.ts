/**
 * The "Served by" control of the route and site forms: "every gateway" (empty value) and the gateways
 * registered in a shared store (GET /gateways). On SQLite nothing is registered and only "every gateway" is
 * offered. A stored gateway that is no longer registered stays selectable, so editing does not change it
 * silently.
 */
import * as api from './api.js';
import { h, replace } from './dom.js';

export const EVERY_GATEWAY = 'every gateway';

/** A <select> named `gateway` (data-field, for the API's errors); fill it with `loadGatewayOptions`. */
export function gatewaySelect(testid: string): HTMLSelectElement {
  return h(
    'select',
    { name: 'gateway', 'data-field': 'gateway', testid },
    h('option', { value: '' }, EVERY_GATEWAY),
  );
}

/** Offers "every gateway" and the registered gateways' names (and `value` if not among them); selects `value`. */
export function setGatewayOptions(el: HTMLSelectElement, names: readonly string[], value: string): void {
  const all = [...names];
  if (value !== '' && !all.includes(value)) all.push(value);
  replace(
    el,
    h('option', { value: '' }, EVERY_GATEWAY),
    ...all.map((n) => h('option', { value: n }, names.includes(n) ? n : `${n} (not registered)`)),
  );
  el.value = value;
}

/** The registered gateways' names, sorted. */
export async function gatewayNames(signal?: AbortSignal): Promise<string[]> {
  return (await api.getGateways(signal)).map((g) => g.name).sort();
}

/** How a list shows who serves a route or a site. */
export function servedBy(gateway: string | null | undefined): HTMLElement {
  return gateway ? h('span', null, gateway) : h('span', { class: 'muted' }, EVERY_GATEWAY);
}
