import type { Client } from 'pg';

import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { startAppWithSecondConnection, type TestApp } from '../helpers/test-app';

const REPORT = `mutation ($key: String!) {
  reportLeakedAccessKey(key: $key, location: "a ticket") { revoked user { id } }
}`;

/**
 * A leak report revokes a key only while it still works: a current key, or a replaced one whose grace period has
 * not ended (README, "Leaked keys: revoked on report"; revoking means giving the user a new key). Whether the
 * grace period has ended must be judged when the report has the owner's locks, by PostgreSQL's clock then, not
 * by now(), the moment its transaction began: a report that waited for the owner's row (here the test holds
 * it, as any act on that user would) while the grace period ended must not replace the key the user's
 * integrations have already switched to.
 */
describe('a grace period that ends while a leak report of its key waits for the owner', () => {
  let app: TestApp;
  let holder: Client;
  let close: () => Promise<void>;
  let admin: TestUser;

  beforeAll(async () => {
    ({ app, other: holder, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
    admin = await createOrganization(app, 'Leak Wait Org');
  });
  afterAll(() => close());

  it('revokes nothing, and the new key keeps working', async () => {
    const member = await createUser(app, admin);
    const regenerated = await app.gql<{ regenerateAccessKey: { accessKey: string } }>(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    const newKey = regenerated.body.data!.regenerateAccessKey.accessKey;
    await holder.query('BEGIN');
    let pending: ReturnType<typeof app.gql>;
    try {
      await holder.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [member.id]);
      pending = app.gql(REPORT, { key: admin.key, variables: { key: member.key } });
      await waitForLockWaiters(app, 1);
      // The grace period reaches its end during the wait (an operator ends it, or its hour is up).
      await app.dataSource.query(
        'UPDATE access_keys SET previous_key_expires_at = clock_timestamp() WHERE user_id = $1',
        [member.id],
      );
    } finally {
      await holder.query('ROLLBACK');
    }
    const response = await pending;
    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
    const me = await app.gql<{ me: { id: string } }>('{ me { id } }', { key: newKey });
    expect(me.body.errors).toBeUndefined();
    expect(me.body.data!.me.id).toBe(member.id);
  });

  it('a session that expires while the report of its token waits ends nothing: revoked false', async () => {
    const member = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, member);
    await holder.query('BEGIN');
    let pending: ReturnType<typeof app.gql>;
    try {
      await holder.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [member.id]);
      pending = app.gql(REPORT, { key: admin.key, variables: { key: token } });
      await waitForLockWaiters(app, 1);
      await app.dataSource.query('UPDATE sessions SET expires_at = clock_timestamp() WHERE user_id = $1', [member.id]);
    } finally {
      await holder.query('ROLLBACK');
    }
    expect((await pending).body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
    const [{ revoked_at }] = await app.dataSource.query('SELECT revoked_at FROM sessions WHERE user_id = $1', [
      member.id,
    ]);
    expect(revoked_at).toBeNull();
  });
});
