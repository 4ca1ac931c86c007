import type { Client } from 'pg';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { startAppWithSecondConnection, type TestApp } from '../helpers/test-app';

const POLICY = `mutation ($days: Int) {
  setAccessKeyPolicy(maxKeyAgeDays: $days, applyToExistingKeys: true) { existingKeysUpdated }
}`;

/**
 * A key policy applied to existing keys leaves a key that has already expired expired (README, "Expiry by
 * policy"): which keys have expired is decided by the service's clock when the policy's statement reads each
 * key row, not when the statement was sent. The statement waits for key rows another transaction holds (a
 * secret rotation takes them FOR UPDATE; here the test holds one): a key that expired during that wait must not
 * be given the new, later expiry and work again. The test moves the key's expiry to a moment inside the wait,
 * exactly as if the wait had lasted past it (the service's clock and PostgreSQL's are one machine's here).
 */
describe('a key that expires while a key policy waits for its row', () => {
  let app: TestApp;
  let holder: Client;
  let close: () => Promise<void>;
  let admin: TestUser;

  beforeAll(async () => {
    ({ app, other: holder, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
    admin = await createOrganization(app, 'Policy Wait Org');
  });
  afterAll(() => close());

  it('stays expired', async () => {
    const member = await createUser(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET expires_at = now() + interval '1 day' WHERE user_id = $1`, [
      member.id,
    ]);
    await holder.query('BEGIN');
    let pending: ReturnType<typeof app.gql>;
    try {
      await holder.query('SELECT 1 FROM access_keys WHERE user_id = $1 FOR UPDATE', [member.id]);
      pending = app.gql(POLICY, { key: admin.key, variables: { days: 3650 } });
      await waitForLockWaiters(app, 1);
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
    const me = await app.gql('{ me { id } }', { key: member.key });
    expect(me.status).toBe(401);
  });
});
