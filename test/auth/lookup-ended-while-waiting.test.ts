import { Client, type Pool, type PoolClient } from 'pg';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';
import { DAY_MS, TestClock } from '../helpers/test-clock';
import { until } from '../helpers/until';

const ENDED = { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' };
const POOL_SIZE = 3;

/**
 * The lookup that authenticates a credential the instance has not cached (AccessKeyService.lookup,
 * SessionService.lookup) decides whether it still works by a clock: the service's for a key's expiry,
 * PostgreSQL's for a grace period and a session. That clock must be read when the lookup reads the row, not
 * before a wait: the wait for a pool connection (a busy pool) or for a table lock (a migration's ALTER TABLE)
 * comes between the transaction's start (`now()`) and its snapshot, and the service's clock was read before
 * both. A credential that ended during the wait must not authenticate: not this request (whose reads are
 * judged only there) and not the requests the cache would answer after it.
 */
describe('a credential that ends while its authentication lookup waits', () => {
  const clock = new TestClock();
  let app: TestApp;
  let admin: TestUser;
  let holder: Client;
  /** A connection of the test's own, outside the app's pool, to watch the database. */
  let holderless: Client;

  beforeAll(async () => {
    app = await startTestApp({ clock, env: { DB_POOL_SIZE: String(POOL_SIZE), AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app, 'Lookup Wait Org');
    holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    holderless = new Client({ connectionString: app.databaseUrl });
    await holderless.connect();
  });
  afterAll(async () => {
    await holder.end();
    await holderless.end();
    await app.close();
  });

  /** Resolves once a statement whose text contains `marker` waits for a lock. */
  async function lookupWaiting(marker: string): Promise<void> {
    for (let tries = 0; ; tries++) {
      const {
        rows: [{ n }],
      } = await holderless.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND position($1 in query) > 0`,
        [marker],
      );
      if (n > 0) return;
      if (tries > 2000) throw new Error(`no statement with ${marker} waited for a lock`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /**
   * Sends `request` while the test holds `table` ACCESS EXCLUSIVE (as a migration's ALTER TABLE would); once the
   * lookup (its SQL contains `marker`) waits for it, `end` runs in the holding transaction, which then commits.
   */
  async function whileTableLocked(
    table: string,
    marker: string,
    request: () => Promise<GraphQLResponse>,
    end: (client: Client) => Promise<unknown>,
  ): Promise<GraphQLResponse> {
    await holder.query('BEGIN');
    let pending: Promise<GraphQLResponse>;
    try {
      await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      pending = request();
      await lookupWaiting(marker);
      await end(holder);
      await holder.query('COMMIT');
    } catch (error) {
      await holder.query('ROLLBACK');
      throw error;
    }
    return pending;
  }

  function expectEnded(response: GraphQLResponse): void {
    expect(response.status).toBe(401);
    expect(response.body.data ?? null).toBeNull();
    expect(response.body.errors?.[0].extensions).toMatchObject(ENDED);
  }

  it('a key that expires while the lookup waits for a pool connection reads nothing', async () => {
    const member = await createUser(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET expires_at = $2 WHERE user_id = $1`, [
      member.id,
      new Date(clock.now() + DAY_MS),
    ]);
    const pool = (app.dataSource.driver as unknown as { master: Pool }).master;
    const held: PoolClient[] = [];
    let response: GraphQLResponse;
    try {
      while (held.length < POOL_SIZE) held.push(await pool.connect());
      const pending = app.gql('{ me { id email } }', { key: member.key });
      await until(() => pool.waitingCount === 1);
      clock.advance(2 * DAY_MS);
      held.pop()!.release();
      response = await pending;
    } finally {
      for (const client of held) client.release();
    }
    expectEnded(response);
    expectEnded(await app.gql('{ me { id } }', { key: member.key }));
  });

  it('a key that expires while the lookup waits for a table lock reads nothing, now or from the cache', async () => {
    const member = await createUser(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET expires_at = $2 WHERE user_id = $1`, [
      member.id,
      new Date(clock.now() + DAY_MS),
    ]);
    const response = await whileTableLocked(
      'access_keys',
      'access-key lookup',
      () => app.gql('{ me { id email } }', { key: member.key }),
      async () => clock.advance(2 * DAY_MS),
    );
    expectEnded(response);
    expectEnded(await app.gql('{ me { id } }', { key: member.key }));
  });

  it('a grace period that ends while the lookup waits for a table lock reads nothing, now or from the cache', async () => {
    const member = await createUser(app, admin);
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    const response = await whileTableLocked(
      'access_keys',
      'access-key lookup',
      () => app.gql('{ me { id email } }', { key: member.key }),
      // The grace period reaches its end during the wait (an operator ends it, or its hour is up).
      (client) =>
        client.query('UPDATE access_keys SET previous_key_expires_at = clock_timestamp() WHERE user_id = $1', [
          member.id,
        ]),
    );
    expectEnded(response);
    expectEnded(await app.gql('{ me { id } }', { key: member.key }));
  });

  it('a session that expires while the lookup waits for a table lock reads nothing, now or from the cache', async () => {
    const member = await createUser(app, admin, { role: Role.MANAGER, password: TEST_PASSWORD });
    const token = await login(app, member);
    const bearer = { headers: { authorization: `Bearer ${token}` } };
    const response = await whileTableLocked(
      'sessions',
      'FROM sessions s',
      () => app.gql('{ me { id email } }', bearer),
      (client) => client.query('UPDATE sessions SET expires_at = clock_timestamp() WHERE user_id = $1', [member.id]),
    );
    expectEnded(response);
    expectEnded(await app.gql('{ me { id } }', bearer));
  });
});
