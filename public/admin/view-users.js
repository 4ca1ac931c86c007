// @ts-check
/// <reference lib="dom" />
import { gql } from './api.js';
import { confirmAct } from './dialog.js';
import { field, fill, h, notice, pageHeading, roleName, select, USER_ACCESS_TRAIL } from './dom.js';
import { go, redrawIfForbidden, signedInUser, signInGeneration } from './state.js';

/**
 * Manage Users: search by name or email, filter by role and status, page through, open a profile by its name.
 * The filters live in the URL (`#/users?search=…&role=…&status=…`), so a filtered list can be linked to and the
 * browser's Back button returns to it.
 */

const PAGE_SIZE = 20;
/** Cursors of the pages before the one shown, for Previous; reset by any new filter. */
let pageCursors = /** @type {Array<string | null>} */ ([null]);
let filtersOfCursors = '';

const USERS_QUERY = `query ($filter: UsersFilter, $first: Int, $after: String) {
  users(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { node { id name email role isActive } }
    pageInfo { hasNextPage endCursor }
  }
}`;

/**
 * @param {HTMLElement} screen
 * @param {URLSearchParams} params search, role, status
 */
export async function usersView(screen, params) {
  const isAdmin = signedInUser().role === 'ADMIN';
  const search = h('input', { name: 'search', type: 'search', value: params.get('search') ?? '' });
  const role = select({
    name: 'role',
    value: params.get('role') ?? '',
    options: [
      ['', 'Any role'],
      ['ADMIN', 'Admin'],
      ['MANAGER', 'Manager'],
      ['MEMBER', 'Member'],
    ],
  });
  const status = select({
    name: 'status',
    value: params.get('status') ?? '',
    options: [
      ['', 'Any status'],
      ['active', 'Active'],
      ['inactive', 'Deactivated'],
    ],
  });
  const filters = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Find users',
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (search.value.trim()) next.set('search', search.value.trim());
        if (role.value) next.set('role', role.value);
        if (status.value) next.set('status', status.value);
        const query = next.toString();
        go(`/users${query ? `?${query}` : ''}`);
      },
    },
    field({ label: 'Search name or email', control: search }),
    field({ label: 'Role', control: role }),
    field({ label: 'Status', control: status }),
    h('button', { type: 'submit', text: 'Search' }),
  );
  const results = h('div', { 'aria-busy': 'true' }, h('p', { text: 'Loading users…' }));
  const reportMessage = h('div', { class: 'message' });
  const report = h('button', {
    type: 'button',
    id: 'report-leaked-key',
    class: 'secondary',
    text: 'Report a leaked key…',
    onclick: () => void reportLeakedKey(reportMessage),
  });
  fill(
    screen,
    ...pageHeading('Manage Users', USER_ACCESS_TRAIL),
    isAdmin
      ? h(
          'div',
          { class: 'toolbar' },
          h('a', { class: 'button', href: '#/users/new', id: 'new-user', text: 'New user' }),
          report,
        )
      : null,
    reportMessage,
    filters,
    results,
  );

  const key = `${signInGeneration()}|${params}`;
  if (key !== filtersOfCursors) [pageCursors, filtersOfCursors] = [[null], key];
  await showPage(results, params);
}

/**
 * @param {HTMLElement} results
 * @param {URLSearchParams} params
 */
async function showPage(results, params) {
  const filter = {
    ...(params.get('search') ? { search: params.get('search') } : {}),
    ...(params.get('role') ? { role: params.get('role') } : {}),
    ...(params.get('status') ? { isActive: params.get('status') === 'active' } : {}),
  };
  results.setAttribute('aria-busy', 'true');
  let page;
  try {
    page = (await gql(USERS_QUERY, { filter, first: PAGE_SIZE, after: pageCursors[pageCursors.length - 1] })).users;
  } catch (error) {
    results.setAttribute('aria-busy', 'false');
    return results.replaceChildren(
      notice(error instanceof Error ? error.message : 'The users could not be loaded.', 'error'),
    );
  }
  /** @type {Array<{ node: { id: string; name: string; email: string; role: string; isActive: boolean } }>} */
  const edges = page.edges;
  const rows = edges.map(({ node }) =>
    h(
      'tr',
      {},
      h('td', { 'data-label': 'Name' }, h('a', { href: `#/users/${node.id}`, text: node.name })),
      h('td', { 'data-label': 'Email', class: 'email', text: node.email }),
      h('td', { 'data-label': 'Role', text: roleName(node.role) }),
      h('td', {
        'data-label': 'Status',
        class: node.isActive ? '' : 'inactive',
        text: node.isActive ? 'Active' : 'Deactivated',
      }),
    ),
  );
  const pageNumber = pageCursors.length;
  const count = `${page.totalCount} user${page.totalCount === 1 ? '' : 's'}`;
  const pager = h(
    'div',
    { class: 'toolbar pager' },
    // The count is announced when a search or a page changes it; the table itself is not read out again.
    h('span', { role: 'status', text: page.totalCount > PAGE_SIZE ? `${count} · page ${pageNumber}` : count }),
    pageNumber > 1
      ? h('button', {
          type: 'button',
          class: 'secondary',
          text: 'Previous page',
          onclick: () => {
            pageCursors.pop();
            void showPage(results, params);
          },
        })
      : null,
    page.pageInfo.hasNextPage
      ? h('button', {
          type: 'button',
          class: 'secondary',
          text: 'Next page',
          onclick: () => {
            pageCursors.push(page.pageInfo.endCursor);
            void showPage(results, params);
          },
        })
      : null,
  );
  const table = h(
    'table',
    { id: 'users', class: 'cards-when-narrow' },
    h('caption', { class: 'visually-hidden', text: 'Users' }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Name', 'Email', 'Role', 'Status'].map((label) => h('th', { scope: 'col', text: label })),
      ),
    ),
    h('tbody', {}, rows),
  );
  results.replaceChildren(
    edges.length ? table : h('p', { class: 'empty', text: 'No users match these filters.' }),
    pager,
  );
  results.setAttribute('aria-busy', 'false');
}

/**
 * An admin found a key or a session token somewhere it should not be (a chat, a ticket, a repository): revoke
 * it if it is one of this organization's. The answer is the same for one of another organization and for none.
 * @param {HTMLElement} message where the outcome is said
 */
async function reportLeakedKey(message) {
  const key = h('input', { name: 'key', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const where = h('input', { name: 'location', type: 'text', autocomplete: 'off', required: true, maxlength: '2000' });
  const answer = await confirmAct({
    title: 'Report a leaked access key',
    message:
      'If this is a working key of your organization, it stops working at once (no grace period) and its user gets a new key, which you read on their profile.',
    fields: [
      field({
        label: 'The key that was found',
        control: key,
        hint: 'Starts with cak_ (a session token, cas_, is reported the same way). It is not kept: only its last four characters are.',
      }),
      field({
        label: 'Where it was found',
        control: where,
        hint: 'A link, a file, a channel: shown on the profile and in the audit log.',
      }),
    ],
    confirmLabel: 'Revoke the key',
    danger: true,
  });
  if (!answer) return;
  try {
    const reported = String(answer.get('key') ?? '');
    const data = await gql(
      'mutation ($key: String!, $location: String!) { reportLeakedAccessKey(key: $key, location: $location) { revoked user { id name } } }',
      { key: reported, location: String(answer.get('location') ?? '') },
    );
    const result = data.reportLeakedAccessKey;
    if (result.revoked && result.user && reported.trim().startsWith('cas_')) {
      message.replaceChildren(
        notice(`That session of ${result.user.name} is signed out: the token no longer works.`, 'success'),
      );
    } else if (result.revoked && result.user) {
      message.replaceChildren(
        h(
          'div',
          { class: 'notice notice-success', role: 'status' },
          h('p', { text: `The key of ${result.user.name} no longer works and a new one was issued: ` }),
          h('a', {
            href: `#/users/${result.user.id}`,
            text: `give ${result.user.name}'s integrations the new key from their profile`,
          }),
        ),
      );
    } else {
      message.replaceChildren(notice('This is not a working key of your organization: nothing was changed.', 'info'));
    }
  } catch (error) {
    if (!redrawIfForbidden(error))
      message.replaceChildren(
        notice(error instanceof Error ? error.message : 'The report could not be sent.', 'error'),
      );
  }
}
