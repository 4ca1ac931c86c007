// @ts-check
/// <reference lib="dom" />
import { gql } from './api.js';
import { field, fill, formatDateTime, h, notice, pageHeading, select, USER_ACCESS_TRAIL } from './dom.js';
import { go, signedInUser } from './state.js';

/**
 * The audit log (admins only): the organization's events, newest first, filtered by what happened, who did it,
 * whom it was about and when; the same list, about one user, on their profile. Filters live in the URL
 * (`#/audit?action=…&actor=…&target=…&from=YYYY-MM-DD&to=YYYY-MM-DD`).
 */

/** Each action in words. */
const ACTION_NAMES = /** @type {const} */ ({
  USER_CREATED: 'User created',
  USER_UPDATED: 'Profile saved',
  USER_ROLE_CHANGED: 'Role changed',
  USER_DEACTIVATED: 'User deactivated',
  USER_REACTIVATED: 'User reactivated',
  ACCESS_KEY_CREATED: 'Access key created',
  ACCESS_KEY_VIEWED: 'Access key revealed',
  ACCESS_KEY_REGENERATED: 'Access key regenerated',
  LOGIN_SUCCEEDED: 'Signed in',
  LOGIN_FAILED: 'Sign-in failed',
  LOGGED_OUT: 'Signed out',
  PASSWORD_CHANGED: 'Password changed',
  ACCESS_KEY_LEAK_REPORTED: 'Access key reported leaked',
  ACCESS_KEY_POLICY_CHANGED: 'Access key policy changed',
  SESSION_TOKEN_LEAK_REPORTED: 'Session token reported leaked',
});

const ACTOR_KIND_NAMES = /** @type {Record<string, string>} */ ({
  SESSION: 'signed in with a password',
  ACCESS_KEY: 'with an access key',
  SYSTEM: 'by an operator command or a secret scanning report',
});

/** The fields of an event that the lists show. */
const AUDIT_EVENT_FIELDS = 'id action actorKind createdAt ip requestId location actor { id name } target { id name }';

/**
 * @typedef {{
 *   id: string; action: keyof typeof ACTION_NAMES; actorKind: string; createdAt: string; ip: string | null;
 *   requestId: string | null; location: string | null; actor: { id: string; name: string } | null;
 *   target: { id: string; name: string } | null;
 * }} AuditEvent
 */

/**
 * @param {{ id: string; name: string } | null} user
 * @param {string} whenMissing
 */
function personLink(user, whenMissing) {
  return user ? h('a', { href: `#/users/${user.id}`, text: user.name }) : h('span', { text: whenMissing });
}

/**
 * A table of events (a card per event on a narrow screen).
 * @param {AuditEvent[]} events
 * @param {string} caption
 */
function auditTable(events, caption) {
  const rows = events.map((event) =>
    h(
      'tr',
      {},
      h('td', { 'data-label': 'When', text: formatDateTime(event.createdAt) }),
      h(
        'td',
        { 'data-label': 'What' },
        h('span', { text: ACTION_NAMES[event.action] ?? event.action }),
        // Where a reported key was found (never the key itself).
        event.location ? h('small', { class: 'hint location', text: ` found at: ${event.location}` }) : null,
      ),
      h(
        'td',
        { 'data-label': 'By' },
        event.action === 'LOGIN_FAILED'
          ? // No one signed in: whoever typed the email and password is not known (the event has no actor).
            h(
              'span',
              {},
              h('span', { text: 'Someone' }),
              h('small', { class: 'hint', text: ' tried to sign in with a password' }),
            )
          : h(
              'span',
              {},
              personLink(event.actor, event.actorKind === 'SYSTEM' ? 'System' : 'Unknown'),
              h('small', { class: 'hint', text: ` ${ACTOR_KIND_NAMES[event.actorKind] ?? ''}` }),
            ),
      ),
      h('td', { 'data-label': 'About' }, personLink(event.target, '—')),
      h('td', { 'data-label': 'Address', class: 'address', text: event.ip ?? '—' }),
    ),
  );
  return h(
    'table',
    { class: 'cards-when-narrow audit' },
    h('caption', { class: 'visually-hidden', text: caption }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['When', 'What', 'By', 'About', 'Address'].map((label) => h('th', { scope: 'col', text: label })),
      ),
    ),
    h('tbody', {}, rows),
  );
}

/**
 * A list of events under `filter` with a "Show more" button that appends the next page.
 * @param {{ filter: Record<string, unknown>; pageSize: number; caption: string; emptyText: string }} params
 * @returns {HTMLElement} filled in as the pages arrive
 */
export function auditList({ filter, pageSize, caption, emptyText }) {
  const container = h('div', { class: 'audit-list', 'aria-busy': 'true' }, h('p', { text: 'Loading events…' }));
  /** @type {AuditEvent[]} */
  const shown = [];
  /** @param {string | null} after */
  const load = async (after) => {
    container.setAttribute('aria-busy', 'true');
    try {
      const data = await gql(
        `query ($filter: AuditEventsFilter, $first: Int, $after: String) {
          auditEvents(filter: $filter, first: $first, after: $after) { edges { node { ${AUDIT_EVENT_FIELDS} } } pageInfo { hasNextPage endCursor } }
        }`,
        { filter, first: pageSize, after },
      );
      const page = data.auditEvents;
      shown.push(...page.edges.map((/** @type {{ node: AuditEvent }} */ edge) => edge.node));
      const more = page.pageInfo.hasNextPage
        ? h('button', {
            type: 'button',
            class: 'secondary',
            text: 'Show more',
            onclick: () => void load(page.pageInfo.endCursor),
          })
        : null;
      fill(container, shown.length ? auditTable(shown, caption) : h('p', { class: 'empty', text: emptyText }), more);
    } catch (error) {
      container.replaceChildren(
        notice(error instanceof Error ? error.message : 'The events could not be loaded.', 'error'),
      );
    }
    container.setAttribute('aria-busy', 'false');
  };
  void load(null);
  return container;
}

/**
 * The start of a day in the reader's time zone, as an ISO instant (the next day's with `nextDay`); undefined
 * for anything that is not a day.
 * @param {string | null} day YYYY-MM-DD
 * @param {boolean} nextDay
 */
function dayStart(day, nextDay) {
  const parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day ?? '');
  if (!parts) return undefined;
  const start = new Date(Number(parts[1]), Number(parts[2]) - 1, Number(parts[3]) + (nextDay ? 1 : 0));
  return Number.isNaN(start.getTime()) ? undefined : start.toISOString();
}

/**
 * @param {HTMLElement} screen
 * @param {URLSearchParams} params action, actor, target, from, to
 */
export async function auditView(screen, params) {
  const heading = pageHeading('Audit log', USER_ACCESS_TRAIL);
  if (signedInUser().role !== 'ADMIN') {
    screen.replaceChildren(
      ...heading,
      notice(
        'Only admins of your organization can read the audit log. Ask your System Administrator if you need it.',
        'info',
      ),
    );
    return;
  }
  const people = h('p', { text: 'Loading filters…' });
  screen.replaceChildren(...heading, people);
  /** @type {Array<[string, string]>} */
  let users = [];
  try {
    const data = await gql('{ users(first: 500) { edges { node { id name } } } }');
    users = data.users.edges.map((/** @type {{ node: { id: string; name: string } }} */ edge) => [
      edge.node.id,
      edge.node.name,
    ]);
  } catch (error) {
    people.replaceWith(notice(error instanceof Error ? error.message : 'The users could not be loaded.', 'error'));
    return;
  }

  const action = select({
    name: 'action',
    value: params.get('action') ?? '',
    options: [['', 'Anything'], ...Object.entries(ACTION_NAMES)],
  });
  const actor = select({ name: 'actor', value: params.get('actor') ?? '', options: [['', 'Anyone'], ...users] });
  const target = select({ name: 'target', value: params.get('target') ?? '', options: [['', 'Anyone'], ...users] });
  const from = h('input', { name: 'from', type: 'date', value: params.get('from') ?? '' });
  const to = h('input', { name: 'to', type: 'date', value: params.get('to') ?? '' });
  const filters = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Filter events',
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        for (const control of [action, actor, target, from, to])
          if (control.value) next.set(control.name, control.value);
        const query = next.toString();
        go(`/audit${query ? `?${query}` : ''}`);
      },
    },
    field({ label: 'What happened', control: action }),
    field({ label: 'Done by', control: actor }),
    field({ label: 'About', control: target }),
    field({ label: 'From (day)', control: from }),
    field({ label: 'To (day, included)', control: to }),
    h('button', { type: 'submit', text: 'Filter' }),
  );

  const filter = {
    ...(params.get('action') ? { action: params.get('action') } : {}),
    ...(params.get('actor') ? { actorId: params.get('actor') } : {}),
    ...(params.get('target') ? { targetUserId: params.get('target') } : {}),
    ...(dayStart(params.get('from'), false) ? { since: dayStart(params.get('from'), false) } : {}),
    ...(dayStart(params.get('to'), true) ? { until: dayStart(params.get('to'), true) } : {}),
  };
  people.replaceWith(filters);
  screen.append(
    auditList({
      filter,
      pageSize: 25,
      caption: 'Audit events, newest first',
      emptyText: 'No events match these filters.',
    }),
  );
}
