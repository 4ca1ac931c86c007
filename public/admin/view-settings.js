// @ts-check
/// <reference lib="dom" />
import { h, pageHeading } from './dom.js';
import { signedInUser } from './state.js';

/**
 * Settings, the console's home: the User & Access Management section of the help article (Manage Users, and for
 * admins the audit log, a new user and the access key policy) and the signed-in person's own account.
 * @param {HTMLElement} screen
 */
export function settingsView(screen) {
  const me = signedInUser();
  const isAdmin = me.role === 'ADMIN';
  /**
   * @param {string} href
   * @param {string} label
   * @param {string} description
   * @param {string} [id]
   */
  const entry = (href, label, description, id) =>
    h('li', {}, h('a', { href, id, text: label }), h('p', { class: 'hint', text: description }));
  screen.replaceChildren(
    ...pageHeading('Settings', []),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'uam-title' },
      h('h2', { id: 'uam-title', text: 'User & Access Management' }),
      h(
        'ul',
        { class: 'entries' },
        entry(
          '#/users',
          'Manage Users',
          isAdmin ? 'Find users, open their profiles, and their access keys.' : 'Find users and open their profiles.',
          'manage-users',
        ),
        isAdmin ? entry('#/users/new', 'New user', 'Add a person or an integration to your organization.') : null,
        isAdmin
          ? entry('#/audit', 'Audit log', 'Who did what, and when: sign-ins, changes, revealed and regenerated keys.')
          : null,
        isAdmin
          ? entry('#/key-policy', 'Access key policy', 'How many days access keys live before they expire, or never.')
          : null,
      ),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'account-title' },
      h('h2', { id: 'account-title', text: 'Your account' }),
      h(
        'ul',
        { class: 'entries' },
        entry(`#/users/${me.id}`, 'Your profile', 'Your name, email and role.'),
        entry('#/account', 'Change password', 'Signing in with a new password ends your other sessions.'),
      ),
    ),
  );
}
