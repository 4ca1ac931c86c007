import type { Client } from 'pg';

import { createOrganization, createUser, login, type TestUser } from '../factories/organizations';
import { startAppWithSecondConnection, type TestApp } from '../helpers/test-app';

const POLICY = `mutation ($days: Int) {
  setAccessKeyPolicy(maxKeyAgeDays: $days, applyToExistingKeys: true) { existingKeysUpdated }
}`;

/**
 * A key policy applied to existing keys leaves a key that has already expired expired, also when the policy's
 * statement waited for a table lock (a migration's ALTER TABLE, an operator's LOCK TABLE) on access_keys. An
 * admin signed in with a session touches no key row before that statement, so the statement itself takes the
 * table lock, when it is parsed and bound: before statement_timestamp() of its execution, which the service's
 * clock at each row was counted from. A key that expired during that wait was given the policy's later expiry.
 * The test moves the key's expiry to a moment inside the wait (one machine's clock, as
 * policy-expired-while-waiting.test.ts).
 */
describe('a key that expires while a key policy waits for a table lock', () => {
  let app: TestApp;
  let holder: Client;
  let close: () => Promise<void>;
  let admin: TestUser;

  beforeAll(async () => {
    ({ app, other: holder, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
    admin = await createOrganization(app, 'Policy Table Lock Org', 'correct horse battery staple');
  });
  afterAll(() => close());

  /**
   * Resolves once the policy's transaction waits for the table lock: its statement on the key rows, or the
   * LOCK TABLE it takes before reading the clock (not the batched write of key uses, another WITH due).
   */
  async function policyWaiting(): Promise<void> {
    for (let tries = 0; ; tries++) {
      const [{ n }] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND (position('WHERE organization_id = $1 AND (expires_at IS DISTINCT FROM' in query) > 0
                 OR query = 'LOCK TABLE access_keys IN ROW EXCLUSIVE MODE')`,
      );
      if (n > 0) return;
      if (tries > 2000) throw new Error('the policy never waited for the table lock');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  it('stays expired', async () => {
    const member = await createUser(app, admin);
    const token = await login(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET expires_at = now() + interval '1 day' WHERE user_id = $1`, [
      member.id,
    ]);
    let pending: ReturnType<typeof app.gql>;
    await holder.query('BEGIN');
    try {
      await holder.query('LOCK TABLE access_keys IN ACCESS EXCLUSIVE MODE');
      pending = app.gql(POLICY, { headers: { authorization: `Bearer ${token}` }, variables: { days: 3650 } });
      await policyWaiting();
      await holder.query('UPDATE access_keys SET expires_at = clock_timestamp() WHERE user_id = $1', [member.id]);
      await holder.query('COMMIT');
    } catch (error) {
      await holder.query('ROLLBACK');
      throw error;
    }
    const response = await pending;
    expect(response.body.errors).toBeUndefined();
    const [{ expired }] = await app.dataSource.query(
      'SELECT expires_at <= clock_timestamp() AS expired FROM access_keys WHERE user_id = $1',
      [member.id],
    );
    expect(expired).toBe(true);
    expect((await app.gql('{ me { id } }', { key: member.key })).status).toBe(401);
  });
});
