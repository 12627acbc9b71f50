/**
 * Building the DOM without HTML strings (the CSP forbids inline scripts and styles, and text never becomes
 * markup this way): `h('button', { class: 'primary', on: { click } }, 'Save')`.
 */

export type Child = Node | string | number | null | undefined | false;

type Listeners = { [E in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[E]) => void };

export interface Props {
  /** Space-separated class names. */
  readonly class?: string;
  /** `data-testid`, for the end-to-end tests. */
  readonly testid?: string;
  readonly on?: Listeners;
  /** Any other attribute; `true` sets it empty, `false`, null and undefined leave it out. */
  readonly [attribute: string]: string | number | boolean | null | undefined | Listeners;
}

function append(parent: Node, children: readonly Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(
      typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c,
    );
  }
}

function setAttributes(el: Element, props: Props | undefined): void {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (key === 'on' || value === undefined || value === null || value === false) continue;
    if (typeof value === 'object') continue;
    const name = key === 'testid' ? 'data-testid' : key;
    el.setAttribute(name, value === true ? '' : String(value));
  }
}

function listen(el: Element, on: Listeners | undefined): void {
  if (!on) return;
  for (const [type, fn] of Object.entries(on)) if (fn) el.addEventListener(type, fn as EventListener);
}

/** An HTML element with attributes, listeners and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttributes(el, props ?? undefined);
  listen(el, props?.on);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element (charts). */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Readonly<Record<string, string | number | undefined>>,
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

/** Replaces everything inside `parent`. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

let idCounter = 0;

/** A document-unique id for pairing <label for> with its input. */
export function uid(prefix: string): string {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}
