import type { Client } from 'pg';

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
import {
  type GraphQLResponse,
  lastAuditEventId,
  startAppWithSecondConnection,
  type TestApp,
} from '../helpers/test-app';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;
const ENDED = { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' };

/**
 * A session and a key's grace period end at a time stored on their row, which the act-time check compares with
 * PostgreSQL's clock. That comparison must be made when the check has its locks, not when its transaction (or
 * statement) began: an act that waited for a lock (here the test holds the caller's users row, as any act on
 * that user would) while its credential's end went by must not act with it. Each case moves the end to a moment
 * inside the wait (the row's time set to clock_timestamp() and committed while the act waits), exactly as if
 * the wait had lasted past it, then lets the act go on.
 */
describe('a credential that ends while the act waits for its locks acts no more', () => {
  let app: TestApp;
  let holder: Client;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ app, other: holder, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
  });
  afterAll(() => close());

  /** Runs `request` while the test holds `userId`'s row; `end` commits while the request waits for it. */
  async function whileHeld(
    userId: string,
    request: () => Promise<GraphQLResponse>,
    end: () => Promise<unknown>,
  ): Promise<GraphQLResponse> {
    await holder.query('BEGIN');
    let pending: Promise<GraphQLResponse> | null = null;
    try {
      await holder.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [userId]);
      pending = request();
      await waitForLockWaiters(app, 1);
      await end();
    } finally {
      await holder.query('ROLLBACK');
    }
    return pending;
  }

  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

  /**
   * `admin` reveals a new user's key with `credentials` while the test holds the admin's row and `end` commits:
   * the answer must hold no key and the error of an ended authority, and no view may be recorded.
   */
  async function revealRefused(
    admin: TestUser,
    credentials: { key: string } | { headers: Record<string, string> },
    end: () => Promise<unknown>,
  ): Promise<void> {
    const target = await createUser(app, admin);
    const since = await lastAuditEventId(app);
    const response = await whileHeld(
      admin.id,
      () =>
        app.gql('query ($id: ID!) { user(id: $id) { id accessKey } }', {
          ...credentials,
          variables: { id: target.id },
        }),
      end,
    );
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(response.body.errors?.map((error) => error.extensions)).toEqual([ENDED]);
    const views = await app.dataSource.query(
      `SELECT 1 FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND id > $2`,
      [admin.id, since],
    );
    expect(views).toEqual([]);
  }
  const endSession = (userId: string) =>
    app.dataSource.query(`UPDATE sessions SET expires_at = clock_timestamp() WHERE user_id = $1`, [userId]);

  it('a session that expires while its act waits: UNAUTHENTICATED, nobody created', async () => {
    const admin = await createOrganization(app, 'Expiring Session Org', TEST_PASSWORD);
    const token = await login(app, admin);
    const email = uniqueEmail('late');

    const response = await whileHeld(
      admin.id,
      () =>
        app.gql('mutation ($e: String!) { createUser(input: { email: $e, name: "Late" }) { id } }', {
          ...bearer(token),
          variables: { e: email },
        }),
      () => endSession(admin.id),
    );

    expect(response.body.errors?.map((error) => error.extensions)).toEqual([ENDED]);
    // The sentence a session's refusal has at authentication, not the key's ("the key may have been replaced").
    expect(response.body.errors?.[0].message).toMatch(/^The session is not valid/);
    expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [email])).toEqual([]);
  });

  it('a session that expires while its key reveal waits: no key, no view', async () => {
    const admin = await createOrganization(app, 'Expiring Reveal Org', TEST_PASSWORD);
    const token = await login(app, admin);
    await revealRefused(admin, bearer(token), () => endSession(admin.id));
  });

  it('a key whose expiry passes while its reveal waits (the one-statement path): no key, no view', async () => {
    const admin = await createOrganization(app, 'Expiring Key Org');
    // The key expires at the moment the waiting statement began: the check, made after the wait, is later.
    await revealRefused(admin, { key: admin.key }, () =>
      app.dataSource.query(
        `UPDATE access_keys SET expires_at = (
           SELECT query_start FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')
          WHERE user_id = $1`,
        [admin.id],
      ),
    );
  });

  it('a replaced key whose grace period ends while its act waits: UNAUTHENTICATED, the name stays', async () => {
    const admin = await createOrganization(app, 'Expiring Grace Org');
    const member = await createUser(app, admin, { role: Role.MEMBER, name: 'Before' });
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();

    const response = await whileHeld(
      member.id,
      () =>
        app.gql('mutation ($id: ID!) { updateUser(id: $id, input: { name: "After" }) { name } }', {
          key: member.key,
          variables: { id: member.id },
        }),
      () =>
        app.dataSource.query(`UPDATE access_keys SET previous_key_expires_at = clock_timestamp() WHERE user_id = $1`, [
          member.id,
        ]),
    );

    expect(response.body.errors?.map((error) => error.extensions)).toEqual([ENDED]);
    expect(response.body.errors?.[0].message).toMatch(/^The credentials are not valid: the key/);
    const [row] = await app.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).toBe('Before');
  });
});
