import { Client } from 'pg';

import type { PauseHooks } from '../../src/authorization/authority';
import type { Actor } from '../../src/request/actor';
import { Role } from '../../src/users/user.entity';
import {
  createOrganization,
  createUser,
  login,
  TEST_PASSWORD,
  type TestUser,
  uniqueEmail,
} from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { type GraphQLResponse, lastAuditEventId, startTestApp, type TestApp } from '../helpers/test-app';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;
const DEACTIVATE = 'mutation ($id: ID!) { deactivateUser(id: $id) { id isActive } }';
const SET_ROLE = 'mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }';
const REGENERATE = 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }';
const EXPIRE_KEYS_OLDER_THAN_A_DAY =
  'mutation { setAccessKeyPolicy(maxKeyAgeDays: 1, applyToExistingKeys: true) { existingKeysUpdated } }';

/**
 * The product's promise: from the instant a deactivation, demotion, key regeneration, sign-out or
 * organization deactivation commits, the old authority does nothing more, in requests already running too.
 * Each race is held open deterministically: the request under test pauses (a test-only hook) inside its
 * act's transaction with the check's locks held, the ending change is started and seen waiting for those
 * locks, then the act commits and the change after it; the request's next act must be refused.
 */
describe('authority at the moment of each act', () => {
  let app: TestApp;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ hooks, env: { AUTH_FAILURE_LIMIT: '10000' } });
  });
  afterEach(() => {
    delete hooks.beforeAuthorityCheck;
    delete hooks.afterAuthorityCheck;
  });
  afterAll(() => app.close());

  async function eventsBy(actorId: string, afterId: string): Promise<Array<{ action: string }>> {
    return app.dataSource.query(`SELECT action FROM audit_events WHERE actor_user_id = $1 AND id > $2 ORDER BY id`, [
      actorId,
      afterId,
    ]);
  }

  async function usersWithEmails(emails: string[]): Promise<string[]> {
    const rows: Array<{ email: string }> = await app.dataSource.query(`SELECT email FROM users WHERE email = ANY($1)`, [
      emails,
    ]);
    return rows.map((row) => row.email).sort();
  }

  /** Where and with what each error came. Mutation fields are non-null: the first refused one ends the request. */
  function errorsOf(response: GraphQLResponse): Array<{ path: string; extensions: unknown }> {
    return (response.body.errors ?? []).map((error) => ({
      path: (error.path ?? []).join('.'),
      extensions: error.extensions,
    }));
  }
  const ENDED = { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' };

  /**
   * Holds the window open: during the first act of `actorId` (its check's locks held) `end` starts and must be
   * seen waiting for a lock; the act then commits, and the actor's next check waits until `end` has committed.
   * Returns how many checks the actor's acts started.
   */
  function endAuthorityDuringFirstAct(params: {
    actorId: string;
    end: () => Promise<unknown>;
    waiters?: number;
    /** Only the request carried by this kind of credential (the ending may be an act of the same user). */
    kind?: Actor['principal']['kind'];
  }): {
    checks: () => number;
    ended: () => Promise<unknown>;
  } {
    let checks = 0;
    let ending: Promise<unknown> | null = null;
    const isActor = (actor: Actor) =>
      actor.principal.userId === params.actorId && (!params.kind || actor.principal.kind === params.kind);
    hooks.afterAuthorityCheck = async (actor) => {
      if (!isActor(actor) || ending) return;
      ending = params.end();
      await waitForLockWaiters(app, params.waiters ?? 1);
    };
    hooks.beforeAuthorityCheck = async (actor) => {
      if (!isActor(actor)) return;
      checks++;
      if (checks > 1) await ending;
    };
    return { checks: () => checks, ended: async () => ending };
  }

  it('case 1: an admin deactivated mid-request creates nobody more, reveals no key and writes no audit row after it', async () => {
    const admin = await createOrganization(app, 'Case One Org');
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    const emails = [uniqueEmail('c0'), uniqueEmail('c1'), uniqueEmail('c2')];
    const since = await lastAuditEventId(app);
    const window = endAuthorityDuringFirstAct({
      actorId: admin.id,
      end: () => app.gql(DEACTIVATE, { key: other.key, variables: { id: admin.id } }),
    });

    const response = await app.gql(
      `mutation ($e0: String!, $e1: String!, $e2: String!, $target: ID!) {
        c0: createUser(input: { email: $e0, name: "Zero", password: "${TEST_PASSWORD}" }) { id }
        c1: createUser(input: { email: $e1, name: "One", password: "${TEST_PASSWORD}" }) { id }
        c2: createUser(input: { email: $e2, name: "Two", password: "${TEST_PASSWORD}" }) { id }
        u: updateUser(id: $target, input: {}) { accessKey }
      }`,
      { key: admin.key, variables: { e0: emails[0], e1: emails[1], e2: emails[2], target: target.id } },
    );

    const deactivation = (await window.ended()) as GraphQLResponse;
    expect(deactivation.body.data!.deactivateUser.isActive).toBe(false);
    expect(errorsOf(response)).toEqual([{ path: 'c1', extensions: ENDED }]);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await usersWithEmails(emails)).toEqual([emails[0]]);
    // c0 committed before the deactivation (it held the locks the deactivation waited for); nothing after it.
    const [{ id: deactivatedAt }] = await app.dataSource.query(
      `SELECT id::text FROM audit_events WHERE action = 'USER_DEACTIVATED' AND target_user_id = $1`,
      [admin.id],
    );
    expect(await eventsBy(admin.id, deactivatedAt)).toEqual([]);
    expect((await eventsBy(admin.id, since)).map((e) => e.action)).toEqual(['USER_CREATED', 'ACCESS_KEY_CREATED']);
    expect(window.checks()).toBe(2);
    const [row] = await app.dataSource.query(`SELECT is_active FROM users WHERE id = $1`, [admin.id]);
    expect(row.is_active).toBe(false);
  });

  it('case 2: an admin deactivated mid-request cannot reactivate itself or demote the admin who deactivated it', async () => {
    const admin = await createOrganization(app, 'Case Two Org');
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const window = endAuthorityDuringFirstAct({
      actorId: admin.id,
      end: () => app.gql(DEACTIVATE, { key: other.key, variables: { id: admin.id } }),
    });

    const response = await app.gql(
      `mutation ($e0: String!, $self: ID!, $other: ID!) {
        c0: createUser(input: { email: $e0, name: "Zero" }) { id }
        back: reactivateUser(id: $self) { isActive }
        demote: setUserRole(id: $other, role: MEMBER) { role }
      }`,
      { key: admin.key, variables: { e0: uniqueEmail('c0'), self: admin.id, other: other.id } },
    );

    expect(((await window.ended()) as GraphQLResponse).body.data!.deactivateUser.isActive).toBe(false);
    expect(errorsOf(response)).toEqual([{ path: 'back', extensions: ENDED }]);
    const rows = await app.dataSource.query(`SELECT id, role, is_active FROM users WHERE id = ANY($1)`, [
      [admin.id, other.id],
    ]);
    expect(rows).toEqual(
      expect.arrayContaining([
        { id: admin.id, role: 'ADMIN', is_active: false },
        { id: other.id, role: 'ADMIN', is_active: true },
      ]),
    );
  });

  it('a grace period ended by SQL mid-request: the replaced key acts no more after that commit', async () => {
    const admin = await createOrganization(app, 'Grace Ended By SQL Org');
    const member = await createUser(app, admin, { name: 'Before' });
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    // `previous_key_expires_at` is no key column: the act's lock of its key row must conflict with its UPDATE.
    const window = endAuthorityDuringFirstAct({
      actorId: member.id,
      end: () =>
        app.dataSource.query(`UPDATE access_keys SET previous_key_expires_at = now() WHERE user_id = $1`, [member.id]),
    });

    const response = await app.gql(
      `mutation ($id: ID!) {
        a: updateUser(id: $id, input: { name: "First" }) { name }
        b: updateUser(id: $id, input: { name: "Second" }) { name }
      }`,
      { key: member.key, variables: { id: member.id } },
    );

    await window.ended();
    expect(errorsOf(response)).toEqual([{ path: 'b', extensions: ENDED }]);
    const [row] = await app.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).toBe('First');
    expect(window.checks()).toBe(2);
  });

  it('case 3: a leaked admin key regenerated mid-request cannot regenerate the main admin key', async () => {
    const main = await createOrganization(app, 'Case Three Org');
    const leaked = await createUser(app, main, { role: Role.ADMIN });
    const since = await lastAuditEventId(app);
    const window = endAuthorityDuringFirstAct({
      actorId: leaked.id,
      end: () => app.gql(REGENERATE, { key: main.key, variables: { id: leaked.id } }),
    });

    const response = await app.gql(
      `mutation ($e0: String!, $main: ID!) {
        c0: createUser(input: { email: $e0, name: "Zero" }) { id }
        r: regenerateAccessKey(userId: $main) { accessKey }
      }`,
      { key: leaked.key, variables: { e0: uniqueEmail('c0'), main: main.id } },
    );

    const regeneration = (await window.ended()) as GraphQLResponse;
    const replacement = regeneration.body.data!.regenerateAccessKey.accessKey;
    expect(errorsOf(response)).toEqual([{ path: 'r', extensions: ENDED }]);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    // The main admin's key is the one it was; the leaked key is refused, its replacement works.
    expect((await app.gql('{ me { id } }', { key: main.key })).body.data!.me.id).toBe(main.id);
    expect((await app.gql('{ me { id } }', { key: leaked.key })).status).toBe(401);
    expect((await app.gql('{ me { id } }', { key: replacement })).body.data!.me.id).toBe(leaked.id);
    expect((await eventsBy(leaked.id, since)).map((e) => e.action)).toEqual(['USER_CREATED', 'ACCESS_KEY_CREATED']);
  });

  describe('whatever ends or changes the authority, a request already running acts no more after it commits', () => {
    const CREATE_THREE = `mutation ($e0: String!, $e1: String!, $e2: String!) {
      c0: createUser(input: { email: $e0, name: "Zero" }) { id }
      c1: createUser(input: { email: $e1, name: "One" }) { id accessKey }
      c2: createUser(input: { email: $e2, name: "Two" }) { id }
    }`;

    interface Ending {
      /** How the request authenticates: its key, or a session of the actor's. */
      credential: 'key' | 'session';
      /** Made true before the request starts, if the ending needs it. */
      setUp?: (world: { actor: TestUser }) => Promise<unknown>;
      end: (world: { actor: TestUser; other: TestUser; token: string | null }) => Promise<unknown>;
      code: 'UNAUTHENTICATED' | 'FORBIDDEN';
    }
    const sql = async (text: string, values: unknown[]) => {
      const client = new Client({ connectionString: app.databaseUrl });
      await client.connect();
      try {
        return await client.query(text, values);
      } finally {
        await client.end();
      }
    };
    const endings: Array<[string, Ending]> = [
      [
        'deactivation',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) => app.gql(DEACTIVATE, { key: w.other.key, variables: { id: w.actor.id } }),
        },
      ],
      [
        'deactivation by SQL',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) => sql(`UPDATE users SET is_active = false WHERE id = $1`, [w.actor.id]),
        },
      ],
      [
        'demotion',
        {
          credential: 'key',
          code: 'FORBIDDEN',
          end: (w) => app.gql(SET_ROLE, { key: w.other.key, variables: { id: w.actor.id, role: 'MEMBER' } }),
        },
      ],
      [
        'key regeneration',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) => app.gql(REGENERATE, { key: w.other.key, variables: { id: w.actor.id } }),
        },
      ],
      // Rewriting key_digest conflicts with the key row lock itself (FOR KEY SHARE), not only with the user's row.
      [
        'key replaced by SQL',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) =>
            sql(`UPDATE access_keys SET key_digest = sha256(gen_random_uuid()::text::bytea) WHERE user_id = $1`, [
              w.actor.id,
            ]),
        },
      ],
      // Rewriting expires_at takes FOR NO KEY UPDATE, which the key row's FOR KEY SHARE lets through: the policy
      // is ordered by its lock of the organization row (FOR UPDATE) instead.
      [
        'key expired by setAccessKeyPolicy(applyToExistingKeys)',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          setUp: (w) =>
            sql(`UPDATE access_keys SET created_at = now() - interval '2 days' WHERE user_id = $1`, [w.actor.id]),
          end: (w) => app.gql(EXPIRE_KEYS_OLDER_THAN_A_DAY, { key: w.other.key }),
        },
      ],
      // An operator expiring a key by hand: `expires_at` is no key column, so the act's lock of its key row must
      // conflict with FOR NO KEY UPDATE too (FOR SHARE), or the expiry commits past an act that then writes.
      [
        'key expired by SQL',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) => sql(`UPDATE access_keys SET expires_at = now() WHERE user_id = $1`, [w.actor.id]),
        },
      ],
      [
        'organization deactivated by SQL',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) => sql(`UPDATE organizations SET is_active = false WHERE id = $1`, [w.actor.organizationId]),
        },
      ],
      [
        'logout of the session',
        {
          credential: 'session',
          code: 'UNAUTHENTICATED',
          end: (w) => app.gql('mutation { logout }', { headers: { authorization: `Bearer ${w.token}` } }),
        },
      ],
      [
        'session revoked by SQL',
        {
          credential: 'session',
          code: 'UNAUTHENTICATED',
          end: (w) => sql(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, [w.actor.id]),
        },
      ],
      // A password change ends every other session of the user (here made with the user's key: all of them).
      [
        'password change (session)',
        {
          credential: 'session',
          code: 'UNAUTHENTICATED',
          end: (w) =>
            app.gql('mutation ($p: String!, $n: String!) { changePassword(currentPassword: $p, newPassword: $n) }', {
              key: w.actor.key,
              variables: { p: TEST_PASSWORD, n: `${TEST_PASSWORD}-changed` },
            }),
        },
      ],
      // A leak report of the request's own key replaces it, as a regeneration does.
      [
        'leak report of the key',
        {
          credential: 'key',
          code: 'UNAUTHENTICATED',
          end: (w) =>
            app.gql('mutation ($k: String!) { reportLeakedAccessKey(key: $k, location: "a paste site") { revoked } }', {
              key: w.other.key,
              variables: { k: w.actor.key },
            }),
        },
      ],
      // A leak report of the request's own session token ends it, as a sign-out does.
      [
        'leak report of the session token',
        {
          credential: 'session',
          code: 'UNAUTHENTICATED',
          end: (w) =>
            app.gql('mutation ($k: String!) { reportLeakedAccessKey(key: $k, location: "a paste site") { revoked } }', {
              key: w.other.key,
              variables: { k: w.token },
            }),
        },
      ],
      [
        'deactivation (session)',
        {
          credential: 'session',
          code: 'UNAUTHENTICATED',
          end: (w) => app.gql(DEACTIVATE, { key: w.other.key, variables: { id: w.actor.id } }),
        },
      ],
    ];

    it.each(endings)('%s', async (_label, ending) => {
      const other = await createOrganization(app, 'Ending Org', TEST_PASSWORD);
      const actor = await createUser(app, other, { role: Role.ADMIN, password: TEST_PASSWORD });
      await ending.setUp?.({ actor });
      const token = ending.credential === 'session' ? await login(app, actor) : null;
      const credentials = token ? { headers: { authorization: `Bearer ${token}` } } : { key: actor.key };
      const emails = [uniqueEmail('c0'), uniqueEmail('c1'), uniqueEmail('c2')];
      const window = endAuthorityDuringFirstAct({
        actorId: actor.id,
        end: () => ending.end({ actor, other, token }),
        kind: token ? 'SESSION' : 'ACCESS_KEY',
      });

      const response = await app.gql(CREATE_THREE, {
        ...credentials,
        variables: { e0: emails[0], e1: emails[1], e2: emails[2] },
      });
      await window.ended();

      expect(response.status).toBe(200);
      expect(errorsOf(response)).toEqual([{ path: 'c1', extensions: expect.objectContaining({ code: ending.code }) }]);
      expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
      expect(await usersWithEmails(emails)).toEqual([emails[0]]);
      expect(window.checks()).toBe(2);
    });
  });

  // A sign-out is an act too: a request already running whose user or organization is deactivated before it
  // reaches logout ends no session and writes no LOGGED_OUT, as a request sent with the token after that would.
  // The request waits for the ending between its fields: a sign-in of someone else (login is public) pauses
  // after its password is verified until the ending has committed.
  it.each([
    [
      'organization deactivated by SQL',
      (person: TestUser) =>
        [`UPDATE organizations SET is_active = false WHERE id = $1`, [person.organizationId]] as const,
    ],
    [
      'user deactivated by SQL',
      (person: TestUser) => [`UPDATE users SET is_active = false WHERE id = $1`, [person.id]] as const,
    ],
  ])('a logout already running after its %s ends nothing and records nothing', async (_label, ending) => {
    const admin = await createOrganization(app, 'Logout Ending Org', TEST_PASSWORD);
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const elsewhere = await createOrganization(app, 'Logout Elsewhere Org', TEST_PASSWORD);
    const token = await login(app, person);
    const [text, values] = ending(person);
    let ended: Promise<unknown> | null = null;
    hooks.afterPasswordVerified = async (email) => {
      if (email !== elsewhere.email) return;
      ended = app.dataSource.query(text, [...values]);
      await ended;
    };
    try {
      const response = await app.gql(
        `mutation ($email: String!, $password: String!) { l: login(email: $email, password: $password) { token } out: logout }`,
        {
          headers: { authorization: `Bearer ${token}` },
          variables: { email: elsewhere.email, password: TEST_PASSWORD },
        },
      );
      expect(ended).not.toBeNull();
      expect(errorsOf(response)).toEqual([{ path: 'out', extensions: ENDED }]);
      const [{ n }] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM audit_events WHERE action = 'LOGGED_OUT' AND target_user_id = $1`,
        [person.id],
      );
      expect(n).toBe(0);
    } finally {
      delete hooks.afterPasswordVerified;
    }
  });

  it('once a reveal is refused, the next mutation of the request is refused too, without another check', async () => {
    const admin = await createOrganization(app, 'Remembered Org');
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const emails = [uniqueEmail('c0'), uniqueEmail('c1')];
    let checks = 0;
    // The first check is c0's own; the second, of c0's accessKey reveal, finds the admin deactivated.
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== admin.id) return;
      if (++checks === 2) await app.gql(DEACTIVATE, { key: other.key, variables: { id: admin.id } });
    };
    const response = await app.gql(
      `mutation ($e0: String!, $e1: String!) {
        c0: createUser(input: { email: $e0, name: "Zero" }) { id accessKey }
        c1: createUser(input: { email: $e1, name: "One" }) { id }
      }`,
      { key: admin.key, variables: { e0: emails[0], e1: emails[1] } },
    );
    expect(errorsOf(response)).toEqual([
      { path: 'c0.accessKey', extensions: ENDED },
      { path: 'c1', extensions: ENDED },
    ]);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await usersWithEmails(emails)).toEqual([emails[0]]);
    expect(checks).toBe(2);
  });

  it('a key reveal whose actor is deactivated before its view commits is withheld, with no view recorded', async () => {
    const admin = await createOrganization(app, 'Reveal Org');
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    const since = await lastAuditEventId(app);
    let deactivation: Promise<GraphQLResponse> | null = null;
    // The reveal's batch transaction is about to check its actor: the deactivation commits first.
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== admin.id || deactivation) return;
      deactivation = app.gql(DEACTIVATE, { key: other.key, variables: { id: admin.id } });
      await deactivation;
    };

    const response = await app.gql('query ($id: ID!) { user(id: $id) { id accessKey } }', {
      key: admin.key,
      variables: { id: target.id },
    });

    expect((await deactivation!)!.body.data!.deactivateUser.isActive).toBe(false);
    expect(response.body.data).toEqual({ user: { id: target.id, accessKey: null } });
    expect(response.body.errors).toEqual([
      expect.objectContaining({
        path: ['user', 'accessKey'],
        extensions: { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' },
      }),
    ]);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await eventsBy(admin.id, since)).toEqual([]);
  });

  it('a key reveal holding its locks makes a deactivation wait; the view commits first, the next reveal is refused', async () => {
    const admin = await createOrganization(app, 'Reveal Lock Org');
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    let deactivation: Promise<GraphQLResponse> | null = null;
    hooks.afterAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== admin.id || deactivation) return;
      deactivation = app.gql(DEACTIVATE, { key: other.key, variables: { id: admin.id } });
      await waitForLockWaiters(app, 1);
    };

    const first = await app.gql('query ($id: ID!) { user(id: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: target.id },
    });
    expect(first.body.data!.user.accessKey).toBe(target.key);
    expect((await deactivation!).body.data!.deactivateUser.isActive).toBe(false);
    const views = await app.dataSource.query(
      `SELECT (SELECT max(id) FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND target_user_id = $2) <
              (SELECT id FROM audit_events WHERE action = 'USER_DEACTIVATED' AND target_user_id = $1) AS viewed_first`,
      [admin.id, target.id],
    );
    expect(views).toEqual([{ viewed_first: true }]);
    expect(
      (
        await app.gql('query ($id: ID!) { user(id: $id) { accessKey } }', {
          key: admin.key,
          variables: { id: target.id },
        })
      ).status,
    ).toBe(401);
  });

  it('a demoted admin keeps plain reads for the request but reveals no key: FORBIDDEN', async () => {
    const admin = await createOrganization(app, 'Demoted Reveal Org');
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    let demoted = false;
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== admin.id || demoted) return;
      demoted = true;
      await app.gql(SET_ROLE, { key: other.key, variables: { id: admin.id, role: 'MANAGER' } });
    };
    const response = await app.gql('query ($id: ID!) { user(id: $id) { email accessKey } }', {
      key: admin.key,
      variables: { id: target.id },
    });
    expect(response.body.data).toEqual({ user: { email: target.email, accessKey: null } });
    expect(response.body.errors!.map((e) => e.extensions!.code)).toEqual(['FORBIDDEN']);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
  });

  it('a role change or deactivation stuck behind a long act makes no other admin of the organization wait', async () => {
    const first = await createOrganization(app, 'No Starvation Org');
    const second = await createUser(app, first, { role: Role.ADMIN });
    const stuck = await createUser(app, first);
    const other = await createUser(app, first);
    // A long act holds the member's row; the first admin's deactivation of that member locks the organization
    // row for its last-admin rule, then waits for the member's row.
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [stuck.id]);
      const deactivation = app.gql(DEACTIVATE, { key: first.key, variables: { id: stuck.id } });
      await waitForLockWaiters(app, 1);
      // Meanwhile the second admin reveals a key, creates a user and renames one (one after another: one user's
      // acts queue behind each other): none waits for the deactivation, which is seen to be the only waiter.
      const unstarved = async (request: Promise<GraphQLResponse>): Promise<GraphQLResponse> => {
        let settled = false;
        void request.finally(() => (settled = true));
        while (!settled) {
          const [{ n }] = await app.dataSource.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          );
          // The deactivation waits; a second waiter is this request queued behind it.
          expect(n).toBeLessThanOrEqual(1);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        return request;
      };
      const revealed = await unstarved(
        app.gql('query ($id: ID!) { user(id: $id) { accessKey } }', { key: second.key, variables: { id: other.id } }),
      );
      expect(revealed.body.data!.user.accessKey).toMatch(KEY_PATTERN);
      const created = await unstarved(
        app.gql('mutation ($email: String!) { createUser(input: { email: $email, name: "Unstarved" }) { id } }', {
          key: second.key,
          variables: { email: uniqueEmail('unstarved') },
        }),
      );
      expect(created.body.errors).toBeUndefined();
      const renamed = await unstarved(
        app.gql('mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed meanwhile" }) { name } }', {
          key: second.key,
          variables: { id: other.id },
        }),
      );
      expect(renamed.body.data!.updateUser.name).toBe('Renamed meanwhile');
      await holder.query('COMMIT');
      expect((await deactivation).body.data!.deactivateUser.isActive).toBe(false);
    } finally {
      await holder.end();
    }
  });

  // Both requests queue behind a lock on their organization's row, then go at once.
  it.each([
    {
      race: 'two admins deactivating each other at the same moment: one wins, the other is UNAUTHENTICATED, no deadlock',
      targets: 'each other',
      outcomes: ['OK', 'UNAUTHENTICATED'],
    },
    {
      // Each deactivates itself: whichever goes second would leave no admin.
      race: 'the last-admin rule still holds when an admin removes the only other admin at the same time',
      targets: 'themselves',
      outcomes: ['CONFLICT', 'OK'],
    },
  ])('$race', async ({ targets, outcomes }) => {
    const first = await createOrganization(app, `Admins Race Org (${targets})`);
    const second = await createUser(app, first, { role: Role.ADMIN });
    const [firstTarget, secondTarget] = targets === 'each other' ? [second, first] : [first, second];
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [first.organizationId]);
      const racing = [
        app.gql(DEACTIVATE, { key: first.key, variables: { id: firstTarget.id } }),
        app.gql(DEACTIVATE, { key: second.key, variables: { id: secondTarget.id } }),
      ];
      await waitForLockWaiters(app, 2);
      await holder.query('COMMIT');
      const results = await Promise.all(racing);
      expect(results.map((r) => (r.body.errors ? r.body.errors[0].extensions!.code : 'OK')).sort()).toEqual(outcomes);
    } finally {
      await holder.end();
    }
    const admins = await app.dataSource.query(
      `SELECT id FROM users WHERE organization_id = $1 AND role = 'ADMIN' AND is_active`,
      [first.organizationId],
    );
    expect(admins).toHaveLength(1);
  });
});
