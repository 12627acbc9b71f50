/**
 * "Copy" buttons. navigator.clipboard exists only in a secure context (HTTPS or localhost); a console
 * reached over plain HTTP on a LAN address falls back to selecting the text for Ctrl+C.
 */
import { h } from './dom.js';

async function writeText(text: string): Promise<boolean> {
  try {
    if (window.isSecureContext && navigator.clipboard) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Refused (no permission): fall through to selecting the text.
  }
  return false;
}

function selectContents(el: Element): void {
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel?.removeAllRanges();
  sel?.addRange(range);
}

/** A button that copies `source`'s text, saying "Copied" (or "Selected — press Ctrl+C") for a moment. */
export function copyButton(source: Element, label = 'Copy', testid?: string): HTMLButtonElement {
  const button = h('button', { type: 'button', class: 'small', testid }, label);
  let timer: number | undefined;
  button.addEventListener('click', () => {
    void writeText(source.textContent ?? '').then((copied) => {
      if (!copied) selectContents(source);
      button.textContent = copied ? 'Copied' : 'Selected — press Ctrl+C';
      window.clearTimeout(timer);
      timer = window.setTimeout(() => (button.textContent = label), 2000);
    });
  });
  return button;
}
