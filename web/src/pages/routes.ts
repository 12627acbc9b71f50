/**
 * Routes: the subnets behind the gateway that members may reach (what policies then allow).
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { removeButton } from '../confirm.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError } from '../form-errors.js';
import { routeBody } from '../form-values.js';
import { gatewayNames, gatewaySelect, servedBy, setGatewayOptions } from '../gateway-picker.js';
import type { PageContext } from '../page.js';
import { busy, card, emptyState, field, loading, pageHeader, table } from '../ui.js';

export async function routesPage(ctx: PageContext): Promise<void> {
  const list = h('div', { class: 'list' }, loading());

  const reload = async (): Promise<void> => {
    try {
      const routes = await api.listRoutes(ctx.signal);
      if (routes.length === 0) {
        replace(list, emptyState('No shared routes yet.', { testid: 'routes-empty' }));
        return;
      }
      replace(
        list,
        table(
          [
            { title: 'Subnet', class: 'col-name', cell: (r) => h('code', null, r.cidr) },
            {
              title: 'Description',
              class: 'col-grow',
              cell: (r) => (r.description ? r.description : h('span', { class: 'muted' }, '—')),
            },
            { title: 'Served by', cell: (r) => servedBy(r.gateway) },
            {
              title: 'Actions',
              class: 'col-actions',
              cell: (r) =>
                removeButton({
                  label: `Remove route ${r.cidr}`,
                  title: `Remove route ${r.cidr}?`,
                  message: 'Members stop being routed to this subnet through the gateway.',
                  confirm: 'Remove route',
                  remove: () => api.removeRoute(r.cidr),
                  notice: `Route ${r.cidr} removed.`,
                  onNotice: showNotice,
                  after: reload,
                  onError: showApiError,
                }),
            },
          ],
          routes,
          (r) => ({ testid: `route-row-${r.cidr}` }),
          'Shared routes',
        ),
      );
    } catch (err) {
      showApiError(err);
    }
  };

  const cidr = h('input', {
    name: 'cidr',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: '10.20.0.0/24',
    'data-field': 'cidr',
    testid: 'add-route-cidr',
  });
  const description = h('input', {
    name: 'description',
    autocomplete: 'off',
    'data-field': 'description',
    testid: 'add-route-description',
  });
  const gateway = gatewaySelect('add-route-gateway');
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'add-route-submit' }, 'Add route');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Add route' },
    h(
      'div',
      { class: 'row' },
      field('Subnet', cidr, 'A prefix the gateway can reach.'),
      field('Description', description, undefined, { class: 'grow' }),
      field('Served by', gateway, 'With several gateways: the one whose host reaches the subnet.'),
    ),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    void busy(submit, async () => {
      try {
        const r = await api.addRoute(
          routeBody({ cidr: cidr.value, description: description.value, gateway: gateway.value }),
        );
        form.reset();
        showNotice(`Route ${r.cidr} added.`);
        await reload();
      } catch (err) {
        showApiError(err, form);
      }
    });
  });

  ctx.main.append(
    pageHeader('Routes'),
    card(
      'Shared routes',
      null,
      h('p', { class: 'hint' }, 'Subnets behind the gateway. Members reach them where a policy allows it.'),
      list,
    ),
    card('Add a route', null, form),
  );
  const loadGateways = async (): Promise<void> => {
    try {
      setGatewayOptions(gateway, await gatewayNames(ctx.signal), gateway.value);
    } catch (err) {
      showApiError(err);
    }
  };
  await Promise.all([reload(), loadGateways()]);
}
