import { Client } from 'pg';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';

const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';

/**
 * A batch of key views in one statement (Authority.insertIfConfirmed) compares the caller's key expiry with the
 * service's clock as it is when the statement checks it: the clock read when the statement was sent, moved on by
 * the time PostgreSQL has waited since. A prepared statement takes its table locks when it is bound, before its
 * execution begins, so a wait for a table lock (a migration's ALTER TABLE, an operator's LOCK TABLE) comes after
 * the transaction's start but before statement_timestamp() of the execution: a key that expired during that wait
 * must not reveal. The test holds audit_events (the table the views go into) and moves the key's expiry to a
 * moment inside the wait, exactly as if the wait had lasted past it (as test/auth/ended-while-waiting.test.ts).
 */
describe('a key that expires while its key views wait for a table lock', () => {
  let app: TestApp;
  let admin: TestUser;
  let target: TestUser;
  let holder: Client;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Table Lock Org');
    target = await createUser(app, admin);
    holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
  });
  afterAll(async () => {
    await holder.end();
    await app.close();
  });

  /** Resolves once the views' statement (INSERT_IF_CONFIRMED) waits for a lock, as `watcher` sees it. */
  async function viewsWaiting(watcher: Client): Promise<void> {
    for (let tries = 0; ; tries++) {
      const {
        rows: [{ n }],
      } = await watcher.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND position('WITH q AS MATERIALIZED' in query) > 0`,
      );
      if (n > 0) return;
      if (tries > 2000) throw new Error('no key view waited for the table lock');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  it('reveals nothing and records no view', async () => {
    // The key is cached, and a first reveal has prepared the statement.
    expect((await app.gql(REVEAL, { key: admin.key, variables: { id: target.id } })).body.errors).toBeUndefined();
    const views = async (): Promise<number> =>
      (
        await app.dataSource.query(
          `SELECT count(*)::int AS n FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1`,
          [admin.id],
        )
      )[0].n;
    const before = await views();
    const watcher = new Client({ connectionString: app.databaseUrl });
    await watcher.connect();
    let response: GraphQLResponse<{ user: { accessKey: string | null } | null }>;
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE');
      const pending = app.gql<{ user: { accessKey: string | null } | null }>(REVEAL, {
        key: admin.key,
        variables: { id: target.id },
      });
      await viewsWaiting(watcher);
      // The key reaches its expiry during the wait (the service's clock and PostgreSQL's are one machine's here).
      await holder.query('UPDATE access_keys SET expires_at = clock_timestamp() WHERE user_id = $1', [admin.id]);
      await holder.query('COMMIT');
      response = await pending;
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await watcher.end();
    }
    expect(response.body.data?.user?.accessKey ?? null).toBeNull();
    expect(response.body.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(await views()).toBe(before);
  });
});
