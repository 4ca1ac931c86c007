// @ts-check
/// <reference lib="dom" />
import { ApiError, gql } from './api.js';
import { confirmAct } from './dialog.js';
import { facts, field, h, notice, pageHeading, USER_ACCESS_TRAIL } from './dom.js';
import { redrawIfForbidden, signedInUser } from './state.js';

/**
 * Access key policy (admins only): how many days the organization's access keys live (`maxKeyAgeDays`, 1 to
 * MAX_KEY_AGE_DAYS, or none: never), set with the API's setAccessKeyPolicy, optionally also for existing keys.
 * Save asks first and says what will happen; the answer says how many existing keys changed.
 */

/** The API's bound (src/access-keys/key-policy.service.ts MAX_KEY_AGE_DAYS, and the migration's CHECK). */
const MAX_KEY_AGE_DAYS = 3650;

const AGE_PROBLEM = `Type a whole number of days from 1 to ${MAX_KEY_AGE_DAYS}, or leave the field empty for keys that never expire.`;

/**
 * A maximum key age in words.
 * @param {number | null} days
 */
function ageInWords(days) {
  if (days === null) return 'Never: keys do not expire';
  return `${days} day${days === 1 ? '' : 's'} after a key is issued`;
}

/**
 * What saving will do, in words, for the confirmation.
 * @param {number | null} days
 * @param {boolean} existing whether existing keys are changed too
 */
function consequence(days, existing) {
  if (days === null) {
    return existing
      ? 'No access key of your organization will expire: existing keys lose their expiry too.'
      : 'Keys issued from now on will never expire. Existing keys keep the expiry they have.';
  }
  const issued = `Keys issued from now on will expire ${days} day${days === 1 ? '' : 's'} after they are issued.`;
  return existing
    ? `${issued} Existing keys will expire ${days} day${days === 1 ? '' : 's'} after they were created: a key already older than that stops working at once, and its integrations need a new key.`
    : `${issued} Existing keys keep the expiry they have.`;
}

/**
 * Reads the number input: null for empty (never), the whole number of days, or undefined when it is not one
 * from 1 to MAX_KEY_AGE_DAYS.
 * @param {HTMLInputElement} input
 * @returns {number | null | undefined}
 */
function readAge(input) {
  if (input.validity.badInput) return undefined;
  const text = input.value.trim();
  if (text === '') return null;
  const days = Number(text);
  return Number.isInteger(days) && days >= 1 && days <= MAX_KEY_AGE_DAYS ? days : undefined;
}

/**
 * @param {HTMLElement} screen
 */
export async function keyPolicyView(screen) {
  const heading = pageHeading('Access key policy', USER_ACCESS_TRAIL);
  if (signedInUser().role !== 'ADMIN') {
    screen.replaceChildren(
      ...heading,
      notice('Only admins of your organization can set the access key policy.', 'info'),
    );
    return;
  }
  screen.replaceChildren(...heading, h('p', { text: 'Loading…' }));
  /** @type {number | null} */
  let current;
  try {
    const data = await gql('{ organization { maxKeyAgeDays } }');
    current = data.organization.maxKeyAgeDays ?? null;
  } catch (error) {
    if (redrawIfForbidden(error)) return;
    screen.replaceChildren(
      ...heading,
      notice(error instanceof Error ? error.message : 'The policy could not be read.', 'error'),
    );
    return;
  }

  const currentValue = h('span', { text: ageInWords(current) });
  const age = h('input', {
    name: 'maxKeyAgeDays',
    type: 'number',
    inputmode: 'numeric',
    min: 1,
    max: MAX_KEY_AGE_DAYS,
    step: 1,
    value: current === null ? '' : String(current),
    autocomplete: 'off',
  });
  const existing = h('input', { name: 'applyToExistingKeys', type: 'checkbox', id: 'apply-to-existing' });
  const message = h('div', { class: 'message', id: 'key-policy-message' });
  const form = h(
    'form',
    {
      class: 'stack narrow',
      'aria-label': 'Access key policy',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const days = readAge(age);
        if (days === undefined) {
          message.replaceChildren(notice(AGE_PROBLEM, 'error'));
          age.setAttribute('aria-invalid', 'true');
          age.focus();
          return;
        }
        age.removeAttribute('aria-invalid');
        const confirmed = await confirmAct({
          title: 'Save the access key policy?',
          message: consequence(days, existing.checked),
          confirmLabel: 'Save policy',
          danger: existing.checked && days !== null,
        });
        if (!confirmed) return;
        try {
          const data = await gql(
            'mutation ($days: Int, $existing: Boolean) { setAccessKeyPolicy(maxKeyAgeDays: $days, applyToExistingKeys: $existing) { organization { maxKeyAgeDays } existingKeysUpdated } }',
            { days, existing: existing.checked },
          );
          const result = data.setAccessKeyPolicy;
          current = result.organization.maxKeyAgeDays ?? null;
          currentValue.textContent = ageInWords(current);
          const updated = result.existingKeysUpdated;
          const also = existing.checked
            ? ` ${updated} existing key${updated === 1 ? ' was' : 's were'} changed.`
            : ' Existing keys were not changed.';
          message.replaceChildren(
            notice(
              `Saved. ${current === null ? 'Keys issued from now on never expire.' : `Keys issued from now on expire ${current} day${current === 1 ? '' : 's'} after they are issued.`}${also}`,
              'success',
            ),
          );
          existing.checked = false;
        } catch (error) {
          if (redrawIfForbidden(error)) return;
          const words =
            error instanceof ApiError && error.code === 'BAD_USER_INPUT'
              ? AGE_PROBLEM
              : error instanceof Error
                ? error.message
                : 'The policy could not be saved.';
          message.replaceChildren(notice(words, 'error'));
        }
      },
    },
    h('h2', { id: 'key-policy-form-title', text: 'Change the policy' }),
    field({
      label: 'Maximum key age, in days',
      control: age,
      hint: `1 to ${MAX_KEY_AGE_DAYS}. Leave empty for keys that never expire.`,
    }),
    h('div', { class: 'check' }, existing, h('label', { for: existing.id, text: 'Also apply to existing keys' })),
    h('p', {
      class: 'hint',
      text: 'Without it, only keys issued from now on get the new expiry. With it, existing keys expire counted from when they were created.',
    }),
    message,
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', text: 'Save' })),
  );
  screen.replaceChildren(
    ...heading,
    h(
      'p',
      {},
      'Access keys of your organization can expire a number of days after they are issued. An expired key is refused like any invalid key; its profile shows when it expires and warns before then.',
    ),
    facts([['Current maximum key age', currentValue, 'key-policy-current']]),
    form,
  );
}
