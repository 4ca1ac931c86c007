// @ts-check
/// <reference lib="dom" />
import { h } from './dom.js';

/**
 * Asks before an act that is hard to undo, in a modal <dialog> (focus stays inside it, Escape cancels, and focus
 * returns to the button that opened it). Cancel has the focus first, so Enter alone never does the act.
 * @param {{
 *   title: string;
 *   message: string | Node[];
 *   confirmLabel: string;
 *   danger?: boolean;
 *   cancelLabel?: string;
 *   fields?: Node[];
 * }} params fields: controls whose values the answer carries (a grace period)
 * @returns {Promise<FormData | null>} the form's values when confirmed, null when cancelled
 */
export function confirmAct({ title, message, confirmLabel, cancelLabel = 'Cancel', danger = false, fields = [] }) {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const cancel = h('button', {
    type: 'button',
    class: 'secondary',
    value: 'cancel',
    text: cancelLabel,
    autofocus: true,
  });
  const confirm = h('button', { type: 'submit', class: danger ? 'danger' : '', value: 'confirm', text: confirmLabel });
  const form = h(
    'form',
    { method: 'dialog', class: 'stack' },
    h('h2', { id: 'dialog-title', text: title }),
    typeof message === 'string' ? h('p', { text: message }) : message,
    fields,
    h('div', { class: 'toolbar' }, cancel, confirm),
  );
  const dialog = h('dialog', { 'aria-labelledby': 'dialog-title', class: 'confirm' }, form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    cancel.addEventListener('click', () => dialog.close('cancel'));
    dialog.addEventListener('close', () => {
      const values = dialog.returnValue === 'confirm' ? new FormData(form) : null;
      dialog.remove();
      if (opener?.isConnected) opener.focus();
      resolve(values);
    });
    dialog.showModal();
  });
}
