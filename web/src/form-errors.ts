/**
 * API errors where the admin will look for them: next to the form control the error's `field` names
 * (`data-field` on the control), otherwise in the page banner. The text is the API's own message.
 */
import { showError } from './banner.js';
import { h, uid } from './dom.js';
import { ApiError, isAbort } from './http.js';

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | HTMLFieldSetElement;

/** "groups[1]" → groups[1], groups; "ports.from" → ports.from, ports. */
function candidates(field: string): string[] {
  const out = [field];
  const noIndex = field.replace(/\[\d+\]/g, '');
  if (!out.includes(noIndex)) out.push(noIndex);
  const head = noIndex.split('.')[0] ?? noIndex;
  if (!out.includes(head)) out.push(head);
  return out;
}

function findControl(scope: HTMLElement, field: string): Control | null {
  for (const name of candidates(field)) {
    const el = scope.querySelector<Control>(`[data-field="${CSS.escape(name)}"]`);
    if (el) return el;
  }
  return null;
}

export function clearFieldErrors(scope: HTMLElement): void {
  for (const p of scope.querySelectorAll('.field-error')) p.remove();
  for (const el of scope.querySelectorAll<HTMLElement>('[aria-invalid="true"]')) {
    el.removeAttribute('aria-invalid');
    const before = el.dataset['describedBy'];
    if (before) el.setAttribute('aria-describedby', before);
    else el.removeAttribute('aria-describedby');
    delete el.dataset['describedBy'];
  }
}

/** Shows a message under one control of `scope`. */
export function showFieldError(scope: HTMLElement, field: string, message: string): boolean {
  const control = findControl(scope, field);
  if (!control) return false;
  const id = uid('error');
  const note = h('p', { class: 'field-error', id, role: 'alert', testid: 'field-error' }, message);
  // A control in a collapsed section (the site form's Advanced) is shown with its error.
  const section = control.closest('details');
  if (section) section.open = true;
  const wrapper = control.closest('.field') ?? control;
  wrapper.appendChild(note);
  // The error first, then the hint the control had (kept to restore when the error goes).
  const hint = control.getAttribute('aria-describedby');
  if (hint) control.dataset['describedBy'] = hint;
  control.setAttribute('aria-invalid', 'true');
  control.setAttribute('aria-describedby', hint ? `${id} ${hint}` : id);
  if (!(control instanceof HTMLFieldSetElement)) control.focus();
  return true;
}

/** Shows what went wrong: beside the field when the API named one `scope` has, else in the banner. */
export function showApiError(err: unknown, scope?: HTMLElement): void {
  if (isAbort(err)) return;
  if (scope) clearFieldErrors(scope);
  if (err instanceof ApiError) {
    if (err.status === 401) return; // the app is on its way to the login page
    if (scope && err.field && showFieldError(scope, err.field, err.message)) return;
    showError(err.message);
    return;
  }
  showError(err instanceof Error ? err.message : String(err));
}
