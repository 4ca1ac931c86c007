// @ts-check
/// <reference lib="dom" />
import { credential, gql, useCredential } from './api.js';
import { confirmAct } from './dialog.js';
import { facts, field, formatDateTime, fromNow, h, notice, select } from './dom.js';
import { go, redrawIfForbidden, signedInUser, signOut } from './state.js';

/**
 * "User Advanced Options" on a profile, for admins only: the Access Key, masked until Reveal (the read that is
 * audited), Copy, Regenerate with a grace period, and what is known about the key without revealing it.
 */

/**
 * @typedef {{
 *   hint: string; createdAt: string; lastUsedAt: string | null; previousKeyExpiresAt: string | null;
 *   previousKeyLastUsedAt: string | null; leakReportedAt: string | null; leakReportLocation: string | null;
 *   leakReportSource: 'GITHUB_SECRET_SCANNING' | 'ADMIN' | null; leakedKeyHint: string | null; expiresAt: string | null;
 * }} AccessKeyInfo
 * @typedef {{ id: string; name: string; accessKeyInfo: AccessKeyInfo | null }} KeyOwner
 */

export const ACCESS_KEY_INFO_FIELDS =
  'accessKeyInfo { hint createdAt lastUsedAt previousKeyExpiresAt previousKeyLastUsedAt ' +
  'leakReportedAt leakReportLocation leakReportSource leakedKeyHint expiresAt }';

/** Who reported a leak, in words. */
const LEAK_REPORTERS = { GITHUB_SECRET_SCANNING: 'by GitHub secret scanning', ADMIN: 'by an admin' };

/** How close an expiry (the organization's maxKeyAgeDays) comes before the profile warns about it. */
const EXPIRY_WARNING_DAYS = 14;

/** Grace periods offered on Regenerate: how long the replaced key keeps working. */
const GRACE_PERIODS = /** @type {Array<[string, string]>} */ ([
  ['0', 'No time: it stops working at once'],
  ['3600', '1 hour'],
  ['86400', '1 day'],
  ['604800', '7 days (the longest)'],
]);

/**
 * @param {AccessKeyInfo | null} info
 */
function keyFacts(info) {
  if (!info) return h('p', { text: 'Press Edit, then Save, above to create a key for this user.' });
  const previousUntil =
    info.previousKeyExpiresAt && new Date(info.previousKeyExpiresAt) > new Date() ? info.previousKeyExpiresAt : null;
  const expiresAt = info.expiresAt ? new Date(info.expiresAt) : null;
  const expired = expiresAt !== null && expiresAt <= new Date();
  const expiry = expiresAt
    ? `${formatDateTime(info.expiresAt)} (${expired ? 'expired' : fromNow(expiresAt)})`
    : 'Never';
  return h(
    'div',
    {},
    leakReport(info),
    expiryWarning(expiresAt),
    facts([
      ['Hint', info.hint, 'key-hint'],
      ['Created', formatDateTime(info.createdAt), 'key-created'],
      ['Last used', formatDateTime(info.lastUsedAt, 'Not used yet'), 'key-last-used'],
      ['Expires', expiry, 'key-expires'],
      [
        'Previous key works until',
        previousUntil ? `${formatDateTime(previousUntil)} (${fromNow(new Date(previousUntil))})` : null,
        'key-previous-until',
      ],
      // Hand-over: when the old key has gone quiet, every integration has moved to the new one.
      [
        'Previous key last used',
        previousUntil ? formatDateTime(info.previousKeyLastUsedAt, 'Not used') : null,
        'key-previous-last-used',
      ],
    ]),
  );
}

/**
 * A warning when the key expires within EXPIRY_WARNING_DAYS or has expired (expiry by policy); null otherwise.
 * @param {Date | null} expiresAt
 */
function expiryWarning(expiresAt) {
  if (!expiresAt) return null;
  const expired = expiresAt <= new Date();
  if (!expired && expiresAt.getTime() - Date.now() >= EXPIRY_WARNING_DAYS * 86_400_000) return null;
  const warning = expired
    ? 'This key has expired: it is refused like any invalid key. Regenerate it and give the new key to its integrations.'
    : `This key expires ${fromNow(expiresAt)}. Regenerate it before then and give the new key to its integrations.`;
  const box = notice(warning, 'warning');
  box.id = 'key-expiry-warning';
  return box;
}

/**
 * The latest leak report of this user's keys, if any: which key, when, by whom, where it was found.
 * @param {AccessKeyInfo} info
 */
function leakReport(info) {
  if (!info.leakReportedAt) return null;
  const reporter = info.leakReportSource ? LEAK_REPORTERS[info.leakReportSource] : '';
  const text =
    `The key ${info.leakedKeyHint ?? ''} was reported leaked ${reporter} on ${formatDateTime(info.leakReportedAt)}, ` +
    `found at: ${info.leakReportLocation ?? 'unknown'}. It stopped working at once and a new key was issued.`;
  const box = notice(text.replace(/ {2,}/g, ' '), 'warning');
  box.id = 'key-leak-report';
  return box;
}

/**
 * @param {KeyOwner} user
 * @returns {HTMLElement}
 */
export function accessKeySection(user) {
  let info = user.accessKeyInfo;
  /** @type {string | null} */
  let revealed = null;

  const value = h('code', { id: 'access-key', class: 'key' });
  const factsBox = h('div', {});
  const message = h('div', { class: 'message' });
  const reveal = h('button', { type: 'button', id: 'reveal-key', 'aria-describedby': 'reveal-hint' });
  const revealHint = h('small', { id: 'reveal-hint', class: 'hint' });
  const copy = h('button', {
    type: 'button',
    id: 'copy-key',
    class: 'secondary',
    text: 'Copy',
    'aria-describedby': 'copy-hint',
  });
  const copyHint = h('small', { id: 'copy-hint', class: 'hint' });
  const regenerate = h('button', { type: 'button', id: 'regenerate-key', class: 'danger', text: 'Regenerate…' });

  const render = () => {
    value.textContent = revealed ?? (info ? `${info.hint} (hidden)` : 'No key yet');
    value.classList.toggle('revealed', revealed !== null);
    reveal.textContent = revealed ? 'Hide' : 'Reveal';
    reveal.disabled = !info;
    revealHint.textContent = info
      ? revealed
        ? ''
        : 'Revealing is recorded in the audit log.'
      : 'This user has no key yet.';
    copy.disabled = revealed === null;
    copyHint.textContent = revealed === null ? 'Reveal the key first.' : '';
    regenerate.disabled = !info;
    factsBox.replaceChildren(keyFacts(info));
  };

  reveal.addEventListener('click', async () => {
    if (revealed) {
      revealed = null;
      message.replaceChildren();
      return render();
    }
    try {
      const data = await gql(`query ($id: ID!) { user(id: $id) { accessKey ${ACCESS_KEY_INFO_FIELDS} } }`, {
        id: user.id,
      });
      revealed = data.user.accessKey;
      info = data.user.accessKeyInfo;
      message.replaceChildren();
      render();
    } catch (error) {
      if (!redrawIfForbidden(error))
        message.replaceChildren(
          notice(error instanceof Error ? error.message : 'The key could not be revealed.', 'error'),
        );
    }
  });

  copy.addEventListener('click', async () => {
    if (!revealed) return;
    try {
      await navigator.clipboard.writeText(revealed);
      message.replaceChildren(
        notice('Access key copied to the clipboard, without spaces before or after it.', 'success'),
      );
    } catch {
      // Without clipboard permission: select exactly the key so that the usual shortcut copies it.
      getSelection()?.selectAllChildren(value);
      message.replaceChildren(
        notice('This browser did not allow copying. The key is selected: press Ctrl+C (⌘C on a Mac).', 'warning'),
      );
    }
  });

  regenerate.addEventListener('click', async () => {
    const grace = select({ name: 'gracePeriodSeconds', options: GRACE_PERIODS, value: '0' });
    const answer = await confirmAct({
      title: `Regenerate the access key of ${user.name}?`,
      message: 'A new key replaces the current one. Integrations that use the current key must be given the new key.',
      fields: [
        field({
          label: 'Keep the current key working for',
          control: grace,
          hint: 'Time to move your integrations to the new key.',
        }),
      ],
      confirmLabel: 'Regenerate key',
      danger: true,
    });
    if (!answer) return;
    const gracePeriodSeconds = Number(answer.get('gracePeriodSeconds'));
    try {
      const data = await gql(
        `mutation ($id: ID!, $grace: Int) {
          regenerateAccessKey(userId: $id, gracePeriodSeconds: $grace) { accessKey previousKeyExpiresAt user { ${ACCESS_KEY_INFO_FIELDS} } }
        }`,
        { id: user.id, grace: gracePeriodSeconds },
      );
      const result = data.regenerateAccessKey;
      revealed = result.accessKey;
      info = result.user.accessKeyInfo;
      const until = result.previousKeyExpiresAt ? new Date(result.previousKeyExpiresAt) : null;
      const previous = until
        ? `The previous key keeps working until ${formatDateTime(result.previousKeyExpiresAt)} (${fromNow(until)}).`
        : 'The previous key no longer works.';
      message.replaceChildren(
        notice(`A new key was created and is shown above: copy it into your integrations now. ${previous}`, 'success'),
      );
      render();
      if (user.id === signedInUser().id && credential()?.kind === 'key')
        await continueWithNewKey(result.accessKey, until);
    } catch (error) {
      if (!redrawIfForbidden(error))
        message.replaceChildren(
          notice(error instanceof Error ? error.message : 'The key could not be regenerated.', 'error'),
        );
    }
  });

  render();
  return h(
    'section',
    { id: 'access-key-section', 'aria-labelledby': 'advanced-title' },
    h('h2', { id: 'advanced-title', text: 'User Advanced Options' }),
    h('dl', { class: 'facts key-field' }, h('div', {}, h('dt', { text: 'Access Key' }), h('dd', {}, value))),
    h('div', { class: 'toolbar' }, reveal, copy, regenerate),
    h('div', { class: 'hints' }, revealHint, copyHint),
    message,
    factsBox,
    h('p', {
      class: 'hint',
      text: 'Treat this key like a password: never share it in public forums or unencrypted email.',
    }),
  );
}

/**
 * The admin regenerated the key this tab is signed in with. Say so, and let them carry on with the new key (which
 * they were just shown) or sign in again; never let the next click fail without a word.
 * @param {string} newKey
 * @param {Date | null} oldKeyUntil when the old key stops working (null: it already has)
 */
async function continueWithNewKey(newKey, oldKeyUntil) {
  const copy = h('button', {
    type: 'button',
    class: 'secondary',
    text: 'Copy the new key',
    onclick: () => void navigator.clipboard.writeText(newKey).catch(() => undefined),
  });
  const answer = await confirmAct({
    title: 'This was the key you are signed in with',
    message: oldKeyUntil
      ? `Your previous key keeps working until ${formatDateTime(oldKeyUntil.toISOString())}. Continue with the new key now, so that this console keeps working after that.`
      : 'Your previous key no longer works, so this console cannot go on with it. Continue with the new key, or sign in again.',
    fields: [h('p', {}, copy)],
    confirmLabel: 'Continue with the new key',
    cancelLabel: oldKeyUntil ? 'Not now' : 'Sign in again',
  });
  if (answer) {
    useCredential({ kind: 'key', key: newKey });
    go(location.hash.slice(1));
  } else if (!oldKeyUntil) {
    signOut('Your access key was replaced. Sign in with the new key.');
  }
}
