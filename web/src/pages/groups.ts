/**
 * Groups: the list with member counts, adding one, editing a description in place, removing one (the API
 * refuses while a member or a policy uses it, and says which).
 */
import * as api from '../api.js';
import { showNotice } from '../banner.js';
import { removeButton } from '../confirm.js';
import { h, replace } from '../dom.js';
import { clearFieldErrors, showApiError } from '../form-errors.js';
import type { PageContext } from '../page.js';
import type { GroupWithCount } from '../types.js';
import { busy, card, emptyState, field, loading, pageHeader, table } from '../ui.js';

function descriptionCell(g: GroupWithCount, reload: () => Promise<void>): HTMLElement {
  const cell = h('div', { class: 'editable' });
  const show = (): void => {
    const edit = h(
      'button',
      { type: 'button', class: 'small link-button', 'aria-label': `Edit description of ${g.name}` },
      'Edit',
    );
    edit.addEventListener('click', editMode);
    replace(
      cell,
      h('span', { class: g.description ? '' : 'muted' }, g.description || 'No description'),
      edit,
    );
  };
  const editMode = (): void => {
    const input = h('input', {
      value: g.description,
      'data-field': 'description',
      'aria-label': `Description of ${g.name}`,
    });
    const save = h('button', { type: 'submit', class: 'small primary' }, 'Save');
    const cancel = h('button', { type: 'button', class: 'small' }, 'Cancel');
    const form = h('form', { class: 'inline-edit' }, h('div', { class: 'field' }, input), save, cancel);
    cancel.addEventListener('click', show);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void busy(save, async () => {
        try {
          await api.updateGroup(g.name, input.value.trim());
          showNotice(`Group ${g.name} saved.`);
          await reload();
        } catch (err) {
          showApiError(err, form);
        }
      });
    });
    replace(cell, form);
    input.focus();
  };
  show();
  return cell;
}

export async function groupsPage(ctx: PageContext): Promise<void> {
  const list = h('div', { class: 'list' }, loading());

  const reload = async (): Promise<void> => {
    try {
      const groups = await api.listGroups(ctx.signal);
      if (groups.length === 0) {
        replace(
          list,
          emptyState('No groups yet. Groups let policies say who reaches what.', { testid: 'groups-empty' }),
        );
        return;
      }
      replace(
        list,
        table(
          [
            { title: 'Name', class: 'col-name', cell: (g) => h('strong', null, g.name) },
            { title: 'Description', class: 'col-grow', cell: (g) => descriptionCell(g, reload) },
            {
              title: 'Members',
              class: 'col-num',
              cell: (g) => String(g.members),
            },
            {
              title: 'Actions',
              class: 'col-actions',
              cell: (g) =>
                removeButton({
                  label: `Remove group ${g.name}`,
                  title: `Remove group ${g.name}?`,
                  message: 'A group that a member or a policy still uses cannot be removed.',
                  confirm: 'Remove group',
                  remove: () => api.removeGroup(g.name),
                  notice: `Group ${g.name} removed.`,
                  onNotice: showNotice,
                  after: reload,
                  onError: showApiError,
                }),
            },
          ],
          groups,
          (g) => ({ testid: `group-row-${g.name}` }),
          'Groups',
        ),
      );
    } catch (err) {
      showApiError(err);
    }
  };

  const name = h('input', {
    name: 'name',
    required: true,
    autocomplete: 'off',
    'data-field': 'name',
    testid: 'add-group-name',
  });
  const description = h('input', {
    name: 'description',
    autocomplete: 'off',
    'data-field': 'description',
    testid: 'add-group-description',
  });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'add-group-submit' }, 'Add group');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Add group' },
    h(
      'div',
      { class: 'row' },
      field('Name', name),
      field('Description', description, undefined, { class: 'grow' }),
    ),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    void busy(submit, async () => {
      try {
        const g = await api.addGroup({ name: name.value.trim(), description: description.value.trim() });
        form.reset();
        showNotice(`Group ${g.name} added.`);
        await reload();
      } catch (err) {
        showApiError(err, form);
      }
    });
  });

  ctx.main.append(pageHeader('Groups'), card('All groups', null, list), card('Add a group', null, form));
  await reload();
}
