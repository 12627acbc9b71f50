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

export interface RemoveButtonOptions extends Omit<ConfirmOptions, 'danger' | 'extra'> {
  /** The button's accessible name ("Remove group eng"). */
  readonly label: string;
  /** Does the removal; the notice shown after it succeeded; what to refresh then. */
  readonly remove: () => Promise<unknown>;
  readonly notice: string;
  readonly onNotice?: (text: string) => void;
  readonly after: () => Promise<void>;
  /** Where an API error goes. */
  readonly onError: (err: unknown) => void;
}

/** A small "Remove" button that asks first, removes, shows a notice and refreshes. */
export function removeButton(o: RemoveButtonOptions): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'small danger', 'aria-label': o.label }, 'Remove');
  b.addEventListener('click', () => {
    void (async () => {
      const ok = await confirmDialog({
        title: o.title,
        message: o.message,
        confirm: o.confirm,
        danger: true,
      });
      if (!ok) return;
      try {
        await o.remove();
        o.onNotice?.(o.notice);
        await o.after();
      } catch (err) {
        o.onError(err);
      }
    })();
  });
  return b;
}
