/**
 * Policies: the default policy, the rules as sentences ("allow eng → 10.20.0.0/24 tcp/443"; a multicast
 * receive rule "allow eng ← 239.1.0.0/16 receive"), adding an allow or deny rule for sending or receiving,
 * removing one. How the gateway decides is in docs/people-vpn.md, "Policies", and docs/multicast.md.
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { removeButton } from '../confirm.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError, showFieldError } from '../form-errors.js';
import type { PageContext } from '../page.js';
import { arrowText, groupText, parsePorts, policyText, protoText } from '../policy-text.js';
import type { Policy, PolicyAction, PolicyDirection, PolicyInput, Proto } from '../types.js';
import { busy, card, emptyState, field, loading, pageHeader, select } from '../ui.js';

function ruleView(p: Policy): HTMLElement {
  const proto = protoText(p);
  return h(
    'span',
    { class: 'rule' },
    h('span', { class: `badge action-${p.action}` }, p.action),
    ' ',
    h('strong', null, groupText(p.group)),
    h('span', { class: 'arrow' }, ` ${arrowText(p)} `),
    h('code', null, p.destination),
    proto ? ' ' : null,
    proto ? h('code', { class: 'proto' }, proto) : null,
    p.direction === 'receive' ? ' ' : null,
    p.direction === 'receive' ? h('span', { class: 'badge direction-receive' }, 'receive') : null,
  );
}

function addPolicyForm(groups: readonly string[], onAdded: () => Promise<void>): HTMLFormElement {
  const action = select(
    [
      ['allow', 'allow'],
      ['deny', 'deny'],
    ],
    { name: 'action', 'data-field': 'action', testid: 'add-policy-action' },
  );
  const group = select([['*', 'everyone (*)'], ...groups.map((g) => [g, g] as const)], {
    name: 'group',
    'data-field': 'group',
    testid: 'add-policy-group',
  });
  if (groups[0] !== undefined) group.value = groups[0];
  const destination = h('input', {
    name: 'destination',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: '10.20.0.0/24',
    'data-field': 'destination',
    testid: 'add-policy-destination',
  });
  const direction = select(
    [
      ['send', 'send (traffic from the group)'],
      ['receive', 'receive (multicast copies to the group)'],
    ],
    { name: 'direction', 'data-field': 'direction', testid: 'add-policy-direction' },
  );
  const proto = select(
    [
      ['any', 'any'],
      ['tcp', 'tcp'],
      ['udp', 'udp'],
      ['icmp', 'icmp'],
    ],
    { name: 'proto', 'data-field': 'proto', testid: 'add-policy-proto' },
  );
  const ports = h('input', {
    name: 'ports',
    autocomplete: 'off',
    inputmode: 'numeric',
    placeholder: '443 or 8000-8100',
    disabled: true,
    'data-field': 'ports',
    testid: 'add-policy-ports',
  });
  proto.addEventListener('change', () => {
    ports.disabled = proto.value !== 'tcp' && proto.value !== 'udp';
    if (ports.disabled) ports.value = '';
  });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'add-policy-submit' }, 'Add rule');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Add policy' },
    h(
      'div',
      { class: 'row' },
      field('Action', action),
      field('Group', group),
      field('Direction', direction),
      field(
        'Destination',
        destination,
        'A prefix, an address, group:NAME or any; to receive: a multicast range (239.1.0.0/16) or any.',
        { class: 'grow' },
      ),
    ),
    h(
      'div',
      { class: 'row' },
      field('Protocol', proto),
      field('Ports', ports, 'tcp and udp only; empty: all.'),
    ),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const range = parsePorts(ports.value);
    if (typeof range === 'string') {
      showFieldError(form, 'ports', range);
      return;
    }
    const input: PolicyInput = {
      action: action.value as PolicyAction,
      group: group.value,
      destination: destination.value.trim(),
      proto: proto.value as Proto,
      ports: range,
      direction: direction.value as PolicyDirection,
    };
    void busy(submit, async () => {
      try {
        const p = await api.addPolicy(input);
        form.reset();
        ports.disabled = true;
        if (groups[0] !== undefined) group.value = groups[0];
        showNotice(`Rule added: ${policyText(p)}.`);
        await onAdded();
      } catch (err) {
        showApiError(err, form);
      }
    });
  });
  return form;
}

export async function policiesPage(ctx: PageContext): Promise<void> {
  const defaults = h('div', { class: 'default-policy' }, loading());
  const list = h('div', { class: 'list' }, loading());
  const formSlot = h('div', null, loading());

  const reload = async (): Promise<void> => {
    try {
      const policies = await api.listPolicies(ctx.signal);
      if (policies.length === 0) {
        replace(
          list,
          emptyState('No rules yet: every packet follows the default policy.', { testid: 'policies-empty' }),
        );
        return;
      }
      const ul = h('ul', { class: 'rules' });
      for (const p of policies) {
        const remove = removeButton({
          label: `Remove rule ${policyText(p)}`,
          title: 'Remove this rule?',
          message: `${policyText(p)}. The gateway applies the change to the next packet.`,
          confirm: 'Remove rule',
          remove: () => api.removePolicy(p.id),
          notice: `Rule removed: ${policyText(p)}.`,
          onNotice: showNotice,
          after: reload,
          onError: showApiError,
        });
        ul.appendChild(
          h('li', { class: `rule-row rule-${p.action}`, testid: `policy-row-${p.id}` }, ruleView(p), remove),
        );
      }
      replace(list, ul);
    } catch (err) {
      showApiError(err);
    }
  };

  ctx.main.append(
    pageHeader('Policies'),
    card('Default', null, defaults),
    card(
      'Rules',
      null,
      h(
        'p',
        { class: 'hint' },
        'A deny rule wins over an allow rule; a packet no rule matches follows the default policy. ' +
          'A member gets a copy of a multicast group only if a receive rule of its groups allows it.',
      ),
      list,
    ),
    card('Add a rule', null, formSlot),
  );
  const [settings, groups] = await Promise.all([
    api.getSettings(ctx.signal).catch((err: unknown) => {
      showApiError(err);
      return null;
    }),
    api.listGroups(ctx.signal).catch((err: unknown) => {
      showApiError(err);
      return [];
    }),
  ]);
  replace(
    defaults,
    settings
      ? h(
          'p',
          { testid: 'default-policy' },
          'Default policy: ',
          h('span', { class: `badge action-${settings.defaultPolicy}` }, settings.defaultPolicy),
          settings.defaultPolicy === 'deny'
            ? ' — members reach only what an allow rule lets them reach. '
            : ' — members reach everything no deny rule forbids. ',
          h('a', { href: '#/settings' }, 'Change it in Settings'),
          '.',
        )
      : emptyState('The settings could not be loaded.'),
  );
  replace(
    formSlot,
    addPolicyForm(
      groups.map((g) => g.name),
      reload,
    ),
  );
  await reload();
}
