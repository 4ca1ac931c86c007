// @ts-check
/// <reference lib="dom" />
import { ApiError, gqlAs, useCredential } from './api.js';
import { field, fill, h, notice } from './dom.js';

/**
 * Sign-in, with email and password or with an access key. It is shown in place of whatever screen was asked for,
 * and the URL is left alone, so that after sign-in that screen (a deep link) opens.
 */

/**
 * An error for the sign-in form, in words; a locked address says until when, and the buttons wait for it.
 * @param {unknown} error
 * @param {HTMLButtonElement[]} buttons
 */
function signInProblem(error, buttons) {
  if (error instanceof ApiError && error.lockedUntil) {
    const until = error.lockedUntil;
    for (const button of buttons) button.disabled = true;
    setTimeout(() => buttons.forEach((button) => (button.disabled = false)), Math.max(0, until.getTime() - Date.now()));
    return notice(error.message, 'error');
  }
  return notice(error instanceof Error ? error.message : 'Sign-in failed.', 'error');
}

/**
 * @param {HTMLElement} screen
 * @param {{ message?: Node | null; onSignedIn: () => Promise<void> }} params message: why sign-in is asked
 *   (signed out, session ended); onSignedIn: what to do once a credential works
 */
export function signInView(screen, { message, onSignedIn }) {
  document.title = 'Sign in · crm-access';
  const problem = h('div', { class: 'problem' });
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const key = h('input', {
    name: 'accessKey',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const signInButton = h('button', { type: 'submit', text: 'Sign in' });
  const keyButton = h('button', { type: 'submit', class: 'secondary', text: 'Sign in with key' });
  const buttons = [signInButton, keyButton];

  /** @param {() => Promise<void>} attempt */
  const run = async (attempt) => {
    problem.replaceChildren();
    for (const button of buttons) button.disabled = true;
    try {
      await attempt();
      await onSignedIn();
    } catch (error) {
      for (const button of buttons) button.disabled = false;
      problem.replaceChildren(signInProblem(error, buttons));
    }
  };

  const withPassword = h(
    'form',
    {
      class: 'stack',
      'aria-labelledby': 'sign-in-password-title',
      onsubmit: (event) => {
        event.preventDefault();
        void run(async () => {
          const data = await gqlAs({
            query:
              'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token } }',
            variables: { email: email.value.trim(), password: password.value },
            credential: null,
          });
          password.value = '';
          useCredential({ kind: 'session', token: data.login.token });
        });
      },
    },
    h('h2', { id: 'sign-in-password-title', text: 'With your email and password' }),
    field({ label: 'Email', control: email }),
    field({ label: 'Password', control: password }),
    signInButton,
  );

  const withKey = h(
    'form',
    {
      class: 'stack',
      'aria-labelledby': 'sign-in-key-title',
      onsubmit: (event) => {
        event.preventDefault();
        void run(async () => {
          // Spaces and line breaks copied with the key are not part of it.
          const candidate = { kind: /** @type {const} */ ('key'), key: key.value.trim() };
          await gqlAs({ query: '{ me { id } }', credential: candidate });
          key.value = '';
          useCredential(candidate);
        });
      },
    },
    h('h2', { id: 'sign-in-key-title', text: 'Or with an access key' }),
    field({
      label: 'Access key',
      control: key,
      hint: 'Starts with cak_. Kept only until you close or reload this page.',
    }),
    keyButton,
  );

  fill(
    screen,
    h('h1', { tabindex: -1, text: 'Sign in to User & Access Management' }),
    message ?? null,
    problem,
    h('div', { class: 'sign-in' }, withPassword, withKey),
  );
}
