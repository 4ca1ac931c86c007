import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { heardEverythingCommitted } from '../helpers/notifications';
import { startTestApp, type TestApp } from '../helpers/test-app';

const ME = '{ me { id } }';

/**
 * Every column a credential lookup decides by is announced when an operator changes it in SQL, so no
 * instance's cache keeps answering for a credential the change ended (the cache is keyed by credential and
 * carries what the lookup read). The test waits for the listener's first heartbeat sent after the change
 * committed: PostgreSQL delivers the change's notification ahead of that heartbeat's answer.
 */
describe('changes made in SQL reach every cache', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app, 'Operator SQL Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  it("a replaced key's own expiry shortened in SQL: the key is refused at once, cached or not", async () => {
    const member = await createUser(app, admin);
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    // Cached by this instance, with the own expiry it had (none).
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);

    await app.dataSource.query(
      `UPDATE access_keys SET previous_key_own_expires_at = now() - interval '1 second' WHERE user_id = $1`,
      [member.id],
    );
    await heardEverythingCommitted(app);

    expect((await app.gql(ME, { key: member.key })).status).toBe(401);
  });
  it('a session given to another user in SQL answers as that user at once, cached or not', async () => {
    const first = await createUser(app, admin, { password: TEST_PASSWORD });
    const second = await createUser(app, admin);
    const token = await login(app, first);
    const me = () => app.gql<{ me: { id: string } }>(ME, { headers: { authorization: `Bearer ${token}` } });
    expect((await me()).body.data!.me.id).toBe(first.id);

    await app.dataSource.query(`UPDATE sessions SET user_id = $2 WHERE user_id = $1`, [first.id, second.id]);
    await heardEverythingCommitted(app);

    expect((await me()).body.data!.me.id).toBe(second.id);
  });
});
