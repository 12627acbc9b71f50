/**
 * Choosing a member's groups: one checkbox per group, in a fieldset the API's "groups" errors attach to.
 */
import { h } from './dom.js';
import type { Group } from './types.js';
import { checkbox } from './ui.js';

export interface GroupPicker {
  readonly el: HTMLFieldSetElement;
  value(): string[];
  reset(): void;
}

export function groupPicker(groups: readonly Group[], selected: readonly string[] = []): GroupPicker {
  const boxes = groups.map((g) => {
    const input = h('input', {
      type: 'checkbox',
      name: 'groups',
      value: g.name,
      checked: selected.includes(g.name),
    });
    return { input, el: checkbox(g.name, input, { title: g.description || undefined }) };
  });
  const el = h(
    'fieldset',
    { class: 'field group-picker', 'data-field': 'groups' },
    h('legend', null, 'Groups'),
    boxes.length
      ? h('div', { class: 'checks' }, ...boxes.map((b) => b.el))
      : h(
          'p',
          { class: 'hint' },
          'No groups yet: add them on the ',
          h('a', { href: '#/groups' }, 'Groups'),
          ' page.',
        ),
  );
  return {
    el,
    value: () => boxes.filter((b) => b.input.checked).map((b) => b.input.value),
    reset: () => {
      for (const b of boxes) b.input.checked = selected.includes(b.input.value);
    },
  };
}
