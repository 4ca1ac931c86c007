import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { INSERT_IF_CONFIRMED } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import {
  type GraphQLResponse,
  lastAuditEventId,
  startAppWithSecondConnection,
  type TestApp,
} from '../helpers/test-app';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;
const REVEAL = 'query ($id: ID!) { user(id: $id) { id accessKey } }';
const SET_ROLE = 'mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }';
const ENDED = { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' };

/**
 * Key views committed in one statement (Authority.insertIfConfirmed, no pause hooks set, as in production):
 * the promise of issue 12 still holds at the moment of each reveal. Each race is held open by a transaction of
 * the test's own holding a row lock the statement needs (no timing): the statement is seen waiting for it,
 * the change commits (or the lock is released), and the reveal answers after.
 */
describe('key views in one statement: confirmed under lock, committed before the key is returned', () => {
  let app: TestApp;
  let other: Client;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ app, other, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
  });
  afterAll(() => close());

  /** Views by `actorId` since its organization was set up (createUser shows, and so records, the new key). */
  const setUpAt = new Map<string, string>();
  async function viewsBy(actorId: string): Promise<Array<{ target_user_id: string }>> {
    return app.dataSource.query(
      `SELECT target_user_id FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND id > $2 ORDER BY id`,
      [actorId, setUpAt.get(actorId)],
    );
  }

  /**
   * An organization with an admin (warmed into the auth cache, its key's use written), a second admin and a
   * member to reveal.
   */
  async function organization(name: string): Promise<{ admin: TestUser; second: TestUser; target: TestUser }> {
    const admin = await createOrganization(app, name, TEST_PASSWORD);
    const second = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    await app.gql('{ me { id } }', { key: admin.key });
    // The write of these uses (a second later, locking the admin's key row for its statement) done now: none is
    // due again for a minute, so no lock of the key rows but the reveal's own is taken while a test looks.
    await app.services.accessKeys.flushUse();
    setUpAt.set(admin.id, await lastAuditEventId(app));
    return { admin, second, target };
  }

  /** Whether `sql`'s row is locked by someone else (FOR UPDATE NOWAIT), in a transaction of its own. */
  async function locked(sql: string, id: string): Promise<boolean> {
    const probe = new Client({ connectionString: app.databaseUrl });
    await probe.connect();
    try {
      await probe.query('BEGIN');
      await probe.query(`${sql} FOR UPDATE NOWAIT`, [id]);
      return false;
    } catch (error) {
      if (!/could not obtain lock/.test(String(error))) throw error;
      return true;
    } finally {
      await probe.end();
    }
  }

  /**
   * Starts `admin`'s reveal of `target` while the test's own transaction holds `sql`'s row FOR UPDATE, sees it
   * wait for that lock, runs `during`, then releases the row (whatever happens) and returns the reveal's answer.
   */
  async function revealHeldAt(
    held: { sql: string; id: string },
    reveal: { admin: TestUser; target: TestUser },
    during: () => Promise<void>,
  ): Promise<GraphQLResponse> {
    let response: Promise<GraphQLResponse> | undefined;
    await other.query('BEGIN');
    try {
      await other.query(`${held.sql} FOR UPDATE`, [held.id]);
      response = app.gql(REVEAL, { key: reveal.admin.key, variables: { id: reveal.target.id } });
      await waitForLockWaiters(app, 1);
      await during();
    } finally {
      await other.query('ROLLBACK');
    }
    return response;
  }

  /** Runs `change` in the test's own transaction, starts the reveal and sees it wait, then commits `change`. */
  async function revealWhileCommitting(
    reveal: () => Promise<GraphQLResponse>,
    change: { sql: string; values: unknown[] },
  ): Promise<GraphQLResponse> {
    await other.query('BEGIN');
    try {
      expect((await other.query(change.sql, change.values)).rowCount).toBe(1);
      const response = reveal();
      await waitForLockWaiters(app, 1);
      await other.query('COMMIT');
      return await response;
    } catch (error) {
      await other.query('ROLLBACK');
      throw error;
    }
  }

  it('a reveal commits its view in one statement of its own, before the key is returned', async () => {
    const { admin, target } = await organization('At Once Org');
    const before = app.queries.count;
    const response = await app.gql(REVEAL, { key: admin.key, variables: { id: target.id } });
    const statements = app.queries.since(before);
    expect(response.body.data!.user.accessKey).toBe(target.key);
    expect(await viewsBy(admin.id)).toEqual([{ target_user_id: target.id }]);
    // The view with its authority in one statement: no transaction of its own around it.
    expect(statements.filter((text) => text === INSERT_IF_CONFIRMED)).toHaveLength(1);
    expect(statements.filter((text) => /^(START TRANSACTION|BEGIN|COMMIT)/i.test(text))).toEqual([]);
  });

  const FORBIDDEN = { code: 'FORBIDDEN' };
  /** Each change that ends or narrows the caller's authority, committed while the reveal's statement waits for it. */
  const endings: Array<{
    name: string;
    refusal: object;
    change: (admin: TestUser) => { sql: string; values: unknown[] };
  }> = [
    {
      name: 'a demotion',
      refusal: FORBIDDEN,
      change: (admin) => ({ sql: `UPDATE users SET role = 'MANAGER' WHERE id = $1`, values: [admin.id] }),
    },
    {
      name: 'a deactivation',
      refusal: ENDED,
      change: (admin) => ({ sql: `UPDATE users SET is_active = false WHERE id = $1`, values: [admin.id] }),
    },
    {
      name: "the organization's deactivation",
      refusal: ENDED,
      change: (admin) => ({
        sql: `UPDATE organizations SET is_active = false WHERE id = $1`,
        values: [admin.organizationId],
      }),
    },
    {
      name: "the caller's key replaced",
      refusal: ENDED,
      change: (admin) => ({
        sql: `UPDATE access_keys SET key_digest = $2 WHERE user_id = $1`,
        values: [admin.id, randomBytes(32)],
      }),
    },
  ];

  it.each(endings)('$name committing while the reveal waits for its lock: refused, no key, no view', async (ending) => {
    const { admin, target } = await organization(`At Once: ${ending.name}`);
    const response = await revealWhileCommitting(
      () => app.gql(REVEAL, { key: admin.key, variables: { id: target.id } }),
      ending.change(admin),
    );
    expect(response.body.data).toEqual({ user: { id: target.id, accessKey: null } });
    expect(response.body.errors!.map((error) => error.extensions)).toEqual([expect.objectContaining(ending.refusal)]);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await viewsBy(admin.id)).toEqual([]);
  });

  it("the caller's session revoked while the reveal waits for its lock: UNAUTHENTICATED, no key, no view", async () => {
    const { admin, target } = await organization('Signed Out At Once Org');
    const token = await login(app, admin);
    const headers = { authorization: `Bearer ${token}` };
    await app.gql('{ me { id } }', { headers });
    const response = await revealWhileCommitting(() => app.gql(REVEAL, { headers, variables: { id: target.id } }), {
      sql: `UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`,
      values: [admin.id],
    });
    expect(response.body.errors!.map((error) => error.extensions)).toEqual([ENDED]);
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await viewsBy(admin.id)).toEqual([]);
  });

  it('locks in the one order, held to its commit: a demotion waits for the view, which commits first', async () => {
    const { admin, second, target } = await organization('Lock Order At Once Org');
    let demotion: Promise<GraphQLResponse> | undefined;
    // The caller's key row is held: the statement locks the organization and users rows, then waits there.
    const held = { sql: 'SELECT 1 FROM access_keys WHERE user_id = $1', id: admin.id };
    const revealed = await revealHeldAt(held, { admin, target }, async () => {
      expect(await locked('SELECT 1 FROM organizations WHERE id = $1', admin.organizationId)).toBe(true);
      expect(await locked('SELECT 1 FROM users WHERE id = $1', admin.id)).toBe(true);
      // Not the target's rows: a reveal locks only its actor's.
      expect(await locked('SELECT 1 FROM users WHERE id = $1', target.id)).toBe(false);
      // A demotion by the other admin waits behind the statement's lock on the caller's users row.
      demotion = app.gql(SET_ROLE, { key: second.key, variables: { id: admin.id, role: 'MANAGER' } });
      await waitForLockWaiters(app, 2);
    });
    expect(revealed.body.data!.user.accessKey).toBe(target.key);
    expect((await demotion!).body.data!.setUserRole.role).toBe('MANAGER');
    const [{ viewed_first }] = await app.dataSource.query(
      `SELECT (SELECT max(id) FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1) <
              (SELECT max(id) FROM audit_events WHERE action = 'USER_ROLE_CHANGED' AND target_user_id = $1) AS viewed_first`,
      [admin.id],
    );
    expect(viewed_first).toBe(true);
    const after = await app.gql(REVEAL, { key: admin.key, variables: { id: target.id } });
    expect(JSON.stringify(after.body)).not.toMatch(KEY_PATTERN);
    expect(await viewsBy(admin.id)).toEqual([{ target_user_id: target.id }]);
  });

  it('the organization row is locked before the users row, the key row after it', async () => {
    const { admin, target } = await organization('Lock Order Users Org');
    const held = { sql: 'SELECT 1 FROM users WHERE id = $1', id: admin.id };
    const revealed = await revealHeldAt(held, { admin, target }, async () => {
      expect(await locked('SELECT 1 FROM organizations WHERE id = $1', admin.organizationId)).toBe(true);
      expect(await locked('SELECT 1 FROM access_keys WHERE user_id = $1', admin.id)).toBe(false);
    });
    expect(revealed.body.data!.user.accessKey).toBe(target.key);
  });
});
