// @ts-check
/// <reference lib="dom" />
import { gql } from './api.js';
import { field, h, newPasswordInput, notice, pageHeading, select, USER_ACCESS_TRAIL } from './dom.js';
import { carryToNextScreen, go, signedInUser } from './state.js';

/**
 * New user (admins): name, email, role and an optional password. The user's access key is created with them.
 * @param {HTMLElement} screen
 */
export function newUserView(screen) {
  const heading = pageHeading('New user', [...USER_ACCESS_TRAIL, ['Manage Users', '/users']]);
  if (signedInUser().role !== 'ADMIN') {
    screen.replaceChildren(...heading, notice('Only admins of your organization can create users.', 'info'));
    return;
  }
  const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
  const email = h('input', { name: 'email', type: 'email', required: true, autocomplete: 'off' });
  const role = select({
    name: 'role',
    value: 'MEMBER',
    options: [
      ['MEMBER', 'Member'],
      ['MANAGER', 'Manager'],
      ['ADMIN', 'Admin'],
    ],
  });
  const password = newPasswordInput({ name: 'password' });
  const message = h('div', { class: 'message' });
  const controls = /** @type {Record<string, HTMLInputElement | HTMLSelectElement>} */ ({
    name,
    email,
    role,
    password,
  });
  const form = h(
    'form',
    {
      class: 'stack narrow',
      'aria-label': 'New user',
      onsubmit: async (event) => {
        event.preventDefault();
        message.replaceChildren();
        const input = {
          name: name.value.trim(),
          email: email.value.trim(),
          role: role.value,
          ...(password.value ? { password: password.value } : {}),
        };
        try {
          const data = await gql('mutation ($input: CreateUserInput!) { createUser(input: $input) { id name } }', {
            input,
          });
          carryToNextScreen(notice(`${data.createUser.name} was created, with an access key of their own.`, 'success'));
          go(`/users/${data.createUser.id}`);
        } catch (error) {
          message.replaceChildren(
            notice(error instanceof Error ? error.message : 'The user could not be created.', 'error'),
          );
          const wrong =
            error instanceof Error && 'field' in error && typeof error.field === 'string'
              ? controls[error.field]
              : undefined;
          wrong?.focus();
        }
      },
    },
    field({ label: 'Name', control: name }),
    field({
      label: 'Email',
      control: email,
      hint: 'They sign in with this address; it must not be in use anywhere in the service.',
    }),
    field({ label: 'Role', control: role }),
    field({
      label: 'Password (optional)',
      control: password,
      hint: 'At least 12 characters. Leave it empty for an integration that only uses its access key.',
    }),
    message,
    h(
      'div',
      { class: 'toolbar' },
      h('button', { type: 'submit', text: 'Create user' }),
      h('a', { href: '#/users', text: 'Cancel' }),
    ),
  );
  screen.replaceChildren(...heading, form);
}
