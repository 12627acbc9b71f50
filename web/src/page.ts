/**
 * What every page gets: the element to render into, and a signal that aborts when the admin leaves the page
 * (so a slow answer or a refresh timer never writes into a page that is gone).
 */

export interface PageContext {
  readonly main: HTMLElement;
  readonly signal: AbortSignal;
}

export type PageRenderer = (ctx: PageContext) => Promise<void> | void;

/** Runs `fn` every `ms` until the page is left. */
export function every(ctx: PageContext, ms: number, fn: () => void): void {
  const timer = window.setInterval(fn, ms);
  ctx.signal.addEventListener('abort', () => window.clearInterval(timer), { once: true });
}
