/**
 * The console's small building blocks: page headings, cards, labelled form fields, tables that become
 * stacked cards on a phone (each cell carries its column's name in data-label for the CSS to show).
 */
import { h, uid, type Child, type Props } from './dom.js';
import type { MemberState } from './member-state.js';

export function pageHeader(title: string, ...extra: Child[]): HTMLElement {
  document.title = `${title} · Weft`;
  return h('header', { class: 'page-header' }, h('h1', null, title), ...extra);
}

export function card(title: string | null, props: Props | null, ...children: Child[]): HTMLElement {
  return h(
    'section',
    { ...props, class: `card ${props?.class ?? ''}`.trim() },
    title === null ? null : h('h2', null, title),
    ...children,
  );
}

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** A label and its control (and an optional hint), wired with for/id and aria-describedby. */
export function field(label: string, control: Control, hint?: string, props?: Props): HTMLElement {
  if (!control.id) control.id = uid('f');
  let hintEl: HTMLElement | null = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h(
    'div',
    { ...props, class: `field ${props?.class ?? ''}`.trim() },
    h('label', { for: control.id }, label),
    control,
    hintEl,
  );
}

/** A checkbox with its label after it. */
export function checkbox(label: string, input: HTMLInputElement, props?: Props): HTMLElement {
  if (!input.id) input.id = uid('c');
  input.type = 'checkbox';
  return h(
    'div',
    { ...props, class: `check ${props?.class ?? ''}`.trim() },
    input,
    h('label', { for: input.id }, label),
  );
}

export function select(options: readonly (readonly [string, string])[], props?: Props): HTMLSelectElement {
  const el = h('select', props ?? null);
  for (const [value, text] of options) el.appendChild(h('option', { value }, text));
  return el;
}

export function loading(): HTMLElement {
  return h('p', { class: 'loading', role: 'status' }, 'Loading…');
}

export function emptyState(text: string, props?: Props): HTMLElement {
  return h('p', { ...props, class: 'empty' }, text);
}

/** Key/value pairs as a definition list. */
export function facts(rows: readonly (readonly [string, Child])[], props?: Props): HTMLElement {
  const dl = h('dl', { ...props, class: `facts ${props?.class ?? ''}`.trim() });
  for (const [k, v] of rows) dl.append(h('div', null, h('dt', null, k), h('dd', null, v)));
  return dl;
}

export function stateBadge(state: MemberState, props?: Props): HTMLElement {
  return h('span', { ...props, class: `badge state-${state}` }, state);
}

export function onlineDot(online: boolean): HTMLElement {
  return h('span', {
    class: `dot ${online ? 'dot-online' : 'dot-offline'}`,
    role: 'img',
    'aria-label': online ? 'online' : 'offline',
    title: online ? 'online' : 'offline',
  });
}

export interface Column<T> {
  readonly title: string;
  readonly cell: (row: T) => Child;
  readonly class?: string;
}

/** A table; below the phone breakpoint each row is a card and each cell shows its column title. */
export function table<T>(
  columns: readonly Column<T>[],
  rows: readonly T[],
  rowProps: (row: T) => Props | null = () => null,
  caption?: string,
): HTMLTableElement {
  const head = h('tr', null, ...columns.map((c) => h('th', { scope: 'col', class: c.class }, c.title)));
  const body = h('tbody');
  for (const row of rows)
    body.appendChild(
      h(
        'tr',
        rowProps(row),
        ...columns.map((c) => h('td', { 'data-label': c.title, class: c.class }, c.cell(row))),
      ),
    );
  return h(
    'table',
    { class: 'table' },
    caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
    h('thead', null, head),
    body,
  );
}

/** Disables `button` (and says so) while `work` runs. */
export async function busy<T>(button: HTMLButtonElement, work: () => Promise<T>): Promise<T> {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
