// @ts-check
/// <reference lib="dom" />
import { credential, gql } from './api.js';
import { field, h, newPasswordInput, notice, pageHeading, passwordForm, roleName } from './dom.js';
import { signedInUser } from './state.js';

/**
 * The signed-in person's own account: who they are signed in as, and a password change (which ends their other
 * sessions; this one stays).
 * @param {HTMLElement} screen
 */
export function accountView(screen) {
  const me = signedInUser();
  const current = h('input', {
    name: 'currentPassword',
    type: 'password',
    required: true,
    autocomplete: 'current-password',
  });
  const next = newPasswordInput({ name: 'newPassword', required: true });
  const again = newPasswordInput({ name: 'confirmPassword', required: true });
  const message = h('div', { class: 'message' });
  const form = h(
    'form',
    {
      class: 'stack narrow',
      'aria-labelledby': 'password-title',
      onsubmit: async (event) => {
        event.preventDefault();
        // Compared as the server compares passwords (NFKC): the same password typed in two forms is one.
        if (passwordForm(next.value) !== passwordForm(again.value)) {
          message.replaceChildren(
            notice('The new password and its repetition differ. Type the same new password twice.', 'error'),
          );
          again.focus();
          return;
        }
        try {
          await gql(
            'mutation ($current: String!, $next: String!) { changePassword(currentPassword: $current, newPassword: $next) }',
            {
              current: current.value,
              next: next.value,
            },
          );
          for (const input of [current, next, again]) input.value = '';
          message.replaceChildren(
            notice('Your password was changed. Your other sessions were signed out; this one stays.', 'success'),
          );
        } catch (error) {
          message.replaceChildren(
            notice(error instanceof Error ? error.message : 'The password could not be changed.', 'error'),
          );
        }
      },
    },
    h('h2', { id: 'password-title', text: 'Change password' }),
    field({ label: 'Current password', control: current }),
    field({ label: 'New password', control: next, hint: 'At least 12 characters.' }),
    field({ label: 'New password, again', control: again }),
    message,
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', text: 'Change password' })),
  );
  const via = credential()?.kind === 'key' ? 'an access key' : 'your email and password';
  screen.replaceChildren(
    ...pageHeading('Your account', [['Settings', '/settings']]),
    h(
      'p',
      {},
      `Signed in as ${me.name} (${me.email}), ${roleName(me.role)} of ${me.organization.name}, with ${via}. `,
      h('a', { href: `#/users/${me.id}`, text: 'Your profile' }),
    ),
    form,
  );
}
