// @ts-check
/// <reference lib="dom" />
import { ACCESS_KEY_INFO_FIELDS, accessKeySection } from './access-key-section.js';
import { gql } from './api.js';
import { confirmAct } from './dialog.js';
import { facts, field, formatDateTime, h, notice, pageHeading, roleName, select, USER_ACCESS_TRAIL } from './dom.js';
import { carryToNextScreen, go, redrawIfForbidden, signedInUser } from './state.js';
import { auditList } from './view-audit.js';

/**
 * A user's full profile: their details, Edit/Save, and for admins their role and status, "User Advanced Options"
 * (the Access Key) and what happened to them (audit events). Every act says how it went; acts that are hard to
 * undo ask first.
 */

/**
 * @typedef {import('./api.js').Role} Role
 * @typedef {{
 *   id: string; name: string; email: string; role: Role; isActive: boolean; createdAt: string; updatedAt: string;
 *   accessKeyInfo?: import('./access-key-section.js').AccessKeyInfo | null;
 * }} Profile
 */

const PROFILE_FIELDS = 'id name email role isActive createdAt updatedAt';

/** What a role change means, for the confirmation. */
const ROLE_CONSEQUENCES = /** @type {Record<Role, string>} */ ({
  ADMIN: 'Admins see and regenerate every access key of the organization, and change every user.',
  MANAGER:
    'Managers see every user of the organization but change only their own name and password, and never see access keys.',
  MEMBER: 'Members see only themselves, change only their own name and password, and never see access keys.',
});

/**
 * @param {HTMLElement} screen
 * @param {{ id: string; section: string | null }} route section: "access-key" to go straight to the key
 */
export async function profileView(screen, { id, section }) {
  const me = signedInUser();
  const isAdmin = me.role === 'ADMIN';
  screen.replaceChildren(
    ...pageHeading('User profile', [...USER_ACCESS_TRAIL, ['Manage Users', '/users']]),
    h('p', { text: 'Loading…' }),
  );
  /** @type {Profile | null} */
  let shown;
  try {
    const data = await gql(
      `query ($id: ID!) { user(id: $id) { ${PROFILE_FIELDS} ${isAdmin ? ACCESS_KEY_INFO_FIELDS : ''} } }`,
      { id },
    );
    shown = data.user;
    if (!shown) throw new Error('This user does not exist, or you may not see them.');
  } catch (error) {
    screen.replaceChildren(
      ...pageHeading('User profile', [...USER_ACCESS_TRAIL, ['Manage Users', '/users']]),
      notice(error instanceof Error ? error.message : 'The profile could not be loaded.', 'error'),
    );
    return;
  }
  const isSelf = shown.id === me.id;
  const message = h('div', { class: 'message', id: 'profile-message' });
  /** @param {unknown} error */
  const failed = (error) =>
    redrawIfForbidden(error) ||
    message.replaceChildren(notice(error instanceof Error ? error.message : 'That did not work.', 'error'));
  /** Shows the profile again, as saved, with `text` at its top. @param {string} text */
  const done = (text) => {
    carryToNextScreen(notice(text, 'success'));
    go(location.hash.slice(1));
  };

  const parts = [
    ...pageHeading(shown.name, [...USER_ACCESS_TRAIL, ['Manage Users', '/users']]),
    message,
    facts([
      ['Name', shown.name, 'profile-name'],
      ['Email', shown.email, 'profile-email'],
      ['Role', roleName(shown.role), 'profile-role'],
      ['Status', shown.isActive ? 'Active' : 'Deactivated', 'profile-status'],
      ['Created', formatDateTime(shown.createdAt), 'profile-created'],
      ['Last changed', formatDateTime(shown.updatedAt), 'profile-updated'],
    ]),
  ];
  if (isAdmin || isSelf) parts.push(editControls(shown, { isAdmin, failed, done }));
  if (isAdmin) {
    parts.push(roleAndStatus(shown, { isSelf, failed, done }));
    parts.push(accessKeySection({ id: shown.id, name: shown.name, accessKeyInfo: shown.accessKeyInfo ?? null }));
    parts.push(
      h(
        'section',
        { 'aria-labelledby': 'activity-title' },
        h('h2', { id: 'activity-title', text: 'Activity' }),
        auditList({
          filter: { targetUserId: shown.id },
          pageSize: 10,
          caption: `Events about ${shown.name}, newest first`,
          emptyText: 'Nothing recorded yet.',
        }),
        h(
          'p',
          {},
          h('a', { href: `#/audit?target=${shown.id}`, text: 'Open in the audit log' }),
          ' · ',
          h('a', { href: `#/audit?actor=${shown.id}`, text: `What ${shown.name} did` }),
        ),
      ),
    );
  } else {
    parts.push(
      h('p', {
        class: 'notice notice-info',
        id: 'access-key-denied',
        text: 'Access keys are shown to admins only (User Advanced Options). If you need one, contact your System Administrator to update your role permissions.',
      }),
    );
  }
  screen.replaceChildren(...parts);
  if (section === 'access-key') screen.querySelector('#access-key-section, #access-key-denied')?.scrollIntoView();
}

/**
 * Edit / Save. Admins change name and email; a person changes their own name. Saving a user who has no access key
 * creates one (when the saver may regenerate it: an admin).
 * @param {Profile} user
 * @param {{ isAdmin: boolean; failed: (error: unknown) => void; done: (text: string) => void }} params
 */
function editControls(user, { isAdmin, failed, done }) {
  const name = h('input', { name: 'name', value: user.name, required: true, autocomplete: 'off' });
  const email = h('input', { name: 'email', type: 'email', value: user.email, required: true, autocomplete: 'off' });
  const form = h(
    'form',
    {
      id: 'edit-form',
      class: 'stack',
      hidden: true,
      'aria-label': `Edit ${user.name}`,
      onsubmit: async (event) => {
        event.preventDefault();
        /** @type {{ name?: string; email?: string }} */
        const input = {};
        if (name.value.trim() !== user.name) input.name = name.value.trim();
        if (isAdmin && email.value.trim() !== user.email) input.email = email.value.trim();
        try {
          const data = await gql(
            `mutation ($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id ${isAdmin ? 'accessKeyInfo { hint }' : ''} } }`,
            { id: user.id, input },
          );
          const keyCreated = isAdmin && !user.accessKeyInfo && data.updateUser.accessKeyInfo;
          done(
            keyCreated ? 'Saved. The user had no access key, so one was created: see User Advanced Options.' : 'Saved.',
          );
        } catch (error) {
          failed(error);
        }
      },
    },
    field({ label: 'Name', control: name }),
    isAdmin ? field({ label: 'Email', control: email, hint: 'The user signs in with this address.' }) : null,
    h(
      'div',
      { class: 'toolbar' },
      h('button', { type: 'submit', text: 'Save' }),
      h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: () => toggle(false) }),
    ),
  );
  const edit = h('button', {
    type: 'button',
    class: 'secondary',
    id: 'edit-user',
    text: 'Edit',
    'aria-expanded': 'false',
    'aria-controls': 'edit-form',
  });
  /** @param {boolean} open */
  const toggle = (open) => {
    form.hidden = !open;
    edit.setAttribute('aria-expanded', String(open));
    if (open) name.focus();
    else edit.focus();
  };
  edit.addEventListener('click', () => toggle(form.hidden));
  return h('div', { class: 'edit' }, h('div', { class: 'toolbar' }, edit), form);
}

/**
 * Role change and deactivate / reactivate (admins). Demoting oneself and deactivating ask first; deactivating
 * oneself is not offered (another admin can).
 * @param {Profile} user
 * @param {{ isSelf: boolean; failed: (error: unknown) => void; done: (text: string) => void }} params
 */
function roleAndStatus(user, { isSelf, failed, done }) {
  const role = select({
    name: 'role',
    value: user.role,
    options: [
      ['ADMIN', 'Admin'],
      ['MANAGER', 'Manager'],
      ['MEMBER', 'Member'],
    ],
  });
  const changeRole = h('button', {
    type: 'button',
    class: 'secondary',
    id: 'change-role',
    text: 'Change role…',
    disabled: true,
  });
  role.addEventListener('change', () => (changeRole.disabled = role.value === user.role));
  changeRole.addEventListener('click', async () => {
    const next = /** @type {Role} */ (role.value);
    const who = isSelf ? 'your' : `${user.name}'s`;
    const selfWarning =
      isSelf && user.role === 'ADMIN'
        ? ' You lose your admin rights at once, and only another admin can give them back.'
        : '';
    const confirmed = await confirmAct({
      title: `Change ${who} role from ${roleName(user.role)} to ${roleName(next)}?`,
      message: `${ROLE_CONSEQUENCES[next]}${selfWarning}`,
      confirmLabel: 'Change role',
      danger: selfWarning !== '',
    });
    if (!confirmed) return;
    try {
      await gql('mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id } }', {
        id: user.id,
        role: next,
      });
      done(
        isSelf
          ? `Your role is now ${roleName(next)}.`
          : `${user.name} is now ${roleName(next) === 'Admin' ? 'an' : 'a'} ${roleName(next)}.`,
      );
    } catch (error) {
      failed(error);
    }
  });

  const statusButton = user.isActive
    ? h('button', {
        type: 'button',
        class: 'danger',
        id: 'deactivate-user',
        text: 'Deactivate…',
        disabled: isSelf,
        'aria-describedby': isSelf ? 'deactivate-hint' : null,
      })
    : h('button', { type: 'button', id: 'reactivate-user', text: 'Reactivate' });
  statusButton.addEventListener('click', async () => {
    if (user.isActive) {
      const confirmed = await confirmAct({
        title: `Deactivate ${user.name}?`,
        message: `${user.name} is signed out at once and cannot sign in, and their access key stops working (integrations that use it fail) until they are reactivated.`,
        confirmLabel: 'Deactivate',
        danger: true,
      });
      if (!confirmed) return;
    }
    const mutation = user.isActive ? 'deactivateUser' : 'reactivateUser';
    try {
      await gql(`mutation ($id: ID!) { ${mutation}(id: $id) { id } }`, { id: user.id });
      done(
        user.isActive
          ? `${user.name} is deactivated. Their access key no longer works.`
          : `${user.name} is active again. Their access key works again.`,
      );
    } catch (error) {
      failed(error);
    }
  });

  return h(
    'section',
    { 'aria-labelledby': 'role-status-title' },
    h('h2', { id: 'role-status-title', text: 'Role and status' }),
    h('div', { class: 'toolbar align-end' }, field({ label: 'Role', control: role }), changeRole),
    h('div', { class: 'toolbar' }, statusButton),
    isSelf
      ? h('small', { class: 'hint', id: 'deactivate-hint', text: 'You cannot deactivate yourself; another admin can.' })
      : null,
  );
}
