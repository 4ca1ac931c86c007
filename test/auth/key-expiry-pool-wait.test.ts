import { Client, type Pool, type PoolClient } from 'pg';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { DAY_MS, TestClock } from '../helpers/test-clock';
import { until } from '../helpers/until';

const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';
const POOL_SIZE = 3;

/**
 * A batch of key views compares a key's expiry with the service's clock as it is when its statement checks it
 * (Authority.insertIfConfirmed). The wait for a pool connection comes before the statement: a key that expired
 * while the batch waited for one must not reveal. The batch waits behind a first one (whose statement waits for
 * a key row the test holds) with every other connection of the pool held by the test; the clock passes the
 * key's expiry, then a connection is let go.
 */
describe('a key that expires while its batch of views waits for a database connection', () => {
  const clock = new TestClock();
  let app: TestApp;
  let admin: TestUser;
  let other: TestUser;
  let target: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ clock, env: { DB_POOL_SIZE: String(POOL_SIZE) } });
    other = await createOrganization(app, 'Pool Wait Org');
    admin = await createUser(app, other, { role: Role.ADMIN });
    target = await createUser(app, other);
  });
  afterAll(() => app.close());

  it('reveals nothing and records no view', async () => {
    await app.dataSource.query(`UPDATE access_keys SET expires_at = $2 WHERE user_id = $1`, [
      admin.id,
      new Date(clock.now() + DAY_MS),
    ]);
    for (const key of [admin.key, other.key])
      expect((await app.gql('{ me { id } }', { key })).body.errors).toBeUndefined();
    const reveal = (key: string) => app.gql(REVEAL, { key, variables: { id: target.id } });
    const pool = (app.dataSource.driver as unknown as { master: Pool }).master;
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    const held: PoolClient[] = [];
    let late: Awaited<ReturnType<typeof reveal>>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM access_keys WHERE user_id = $1 FOR UPDATE', [target.id]);
      const first = reveal(other.key);
      await waitForLockWaiters(app, 1);
      const second = reveal(admin.key);
      await until(() => app.services.audit.keyViews.waiting === 1);
      // Every connection but the first batch's, and then that one as soon as its statement is done.
      while (held.length < POOL_SIZE - 1) held.push(await pool.connect());
      const freed = pool.connect();
      await until(() => pool.waitingCount === 1);
      await holder.query('ROLLBACK');
      held.push(await freed);
      expect((await first).body.data!.user.accessKey).toBe(target.key);
      // The second batch has read the clock and waits for a connection.
      await until(() => pool.waitingCount === 1);
      clock.advance(2 * DAY_MS);
      held.pop()!.release();
      late = await second;
    } finally {
      for (const client of held) client.release();
      await holder.end();
    }
    expect(late.body.data?.user?.accessKey ?? null).toBeNull();
    expect(late.body.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const views = await app.dataSource.query(
      `SELECT 1 FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND target_user_id = $2`,
      [admin.id, target.id],
    );
    expect(views).toEqual([]);
  });
});
