import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const REPORT = `mutation ($key: String!) {
  reportLeakedAccessKey(key: $key, location: "a ticket") { revoked user { id } }
}`;

/**
 * A leak report revokes a key only while it works (README, "GitHub secret scanning": an expired key is a
 * `false_positive`): revoking means giving its user a new key and recording a leak. A current key past its expiry,
 * or a replaced key past its own expiry though its grace period runs, works nowhere (authentication refuses both),
 * so a report of either must change nothing.
 */
describe('a leak report of an expired key', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app, 'Expired Leak Org');
  });
  afterAll(() => app.close());

  /** The user's key row's digests, and the leak reports recorded of the user. */
  async function keyState(userId: string): Promise<unknown> {
    const [row] = await app.dataSource.query(
      `SELECT key_digest, previous_key_digest, leak_reported_at FROM access_keys WHERE user_id = $1`,
      [userId],
    );
    const [{ reports }] = await app.dataSource.query(
      `SELECT count(*)::int AS reports FROM audit_events WHERE target_user_id = $1 AND action = 'ACCESS_KEY_LEAK_REPORTED'`,
      [userId],
    );
    return { ...row, reports };
  }

  it('a current key past its expiry is not revoked: revoked false, nothing changes', async () => {
    const member = await createUser(app, admin);
    // An operator's expiry, in SQL (announced to the caches as every change of a key row is).
    await app.dataSource.query(`UPDATE access_keys SET expires_at = now() - interval '1 minute' WHERE user_id = $1`, [
      member.id,
    ]);
    const before = await keyState(member.id);

    const response = await app.gql(REPORT, { key: admin.key, variables: { key: member.key } });

    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
    expect(await keyState(member.id)).toEqual(before);
  });

  it('a replaced key past its own expiry, in a grace period, is not revoked, and the new key is kept', async () => {
    const member = await createUser(app, admin);
    const regenerated = await app.gql<{ regenerateAccessKey: { accessKey: string } }>(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    await app.dataSource.query(
      `UPDATE access_keys SET previous_key_own_expires_at = now() - interval '1 minute' WHERE user_id = $1`,
      [member.id],
    );
    const before = await keyState(member.id);

    const response = await app.gql(REPORT, { key: admin.key, variables: { key: member.key } });

    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
    expect(await keyState(member.id)).toEqual(before);
    const me = await app.gql('{ me { id } }', { key: regenerated.body.data!.regenerateAccessKey.accessKey });
    expect(me.body.errors).toBeUndefined();
  });

  it('a current key before its expiry is still revoked', async () => {
    const member = await createUser(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET expires_at = now() + interval '1 day' WHERE user_id = $1`, [
      member.id,
    ]);
    const response = await app.gql(REPORT, { key: admin.key, variables: { key: member.key } });
    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: true, user: { id: member.id } } } });
  });
});
