/**
 * Asking before something that cannot be undone (removing a member, rotating its keys), in a modal
 * <dialog> with real buttons rather than window.confirm, so it can be styled and driven by tests
 * (data-testid "confirm-dialog", "confirm-ok", "confirm-cancel").
 */
import { h, type Child } from './dom.js';

export interface ConfirmOptions {
  readonly title: string;
  readonly message: string;
  /** The confirming button's text ("Remove"). */
  readonly confirm: string;
  readonly danger?: boolean;
  /** More content between the message and the buttons (an optional input). */
  readonly extra?: Child;
}

export function confirmDialog(options: ConfirmOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const titleId = 'confirm-title';
    const ok = h(
      'button',
      { type: 'submit', value: 'ok', class: options.danger ? 'danger' : 'primary', testid: 'confirm-ok' },
      options.confirm,
    );
    const cancel = h('button', { type: 'button', testid: 'confirm-cancel' }, 'Cancel');
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', { id: titleId }, options.title),
      h('p', null, options.message),
      options.extra,
      h('div', { class: 'actions' }, cancel, ok),
    );
    const dialog = h('dialog', { 'aria-labelledby': titleId, testid: 'confirm-dialog' }, form);
    let answer = false;
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      answer = true;
      dialog.close();
    });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
