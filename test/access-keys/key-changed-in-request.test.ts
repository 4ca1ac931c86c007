import { keyHint } from '../../src/access-keys/key-format';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { lastAuditEventId, startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A request keeps the keys it revealed, so a second `accessKey` of the same user answers without another view.
 * An act of the same request that changes that user's key must not leave the request answering the key it
 * read before: regenerateAccessKey hands the request the key it issued (Loaders.keyIssued); a leak report
 * (which revokes the key and issues another) and "Edit, then Save" (which issues a missing key) must too,
 * else the answer shows a revoked key (or none) as the user's current key, and the key facts of before the act.
 */
describe('an act that changes a key, in a request that already read it', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app, 'Request Cache Clinic');
  });
  afterAll(() => app.close());

  async function currentKeyHint(userId: string): Promise<string | null> {
    const rows: Array<{ key_hint: string }> = await app.dataSource.query(
      `SELECT key_hint FROM access_keys WHERE user_id = $1`,
      [userId],
    );
    return rows[0]?.key_hint ?? null;
  }

  it('reportLeakedAccessKey after the key was read: its payload shows the new key and the report, never the revoked key', async () => {
    const member = await createUser(app, admin);
    const since = await lastAuditEventId(app);
    const response = await app.gql(
      `mutation ($id: ID!, $key: String!) {
        before: updateUser(id: $id, input: {}) { accessKey accessKeyInfo { hint } }
        report: reportLeakedAccessKey(key: $key, location: "a support ticket") {
          revoked user { accessKey accessKeyInfo { hint leakReportedAt leakedKeyHint } }
        }
      }`,
      { key: admin.key, variables: { id: member.id, key: member.key } },
    );
    expect(response.body.errors).toBeUndefined();
    const { before, report } = response.body.data!;
    expect(before.accessKey).toBe(member.key);
    expect(report.revoked).toBe(true);
    // The key was revoked: it no longer authenticates.
    expect((await app.gql('{ me { id } }', { key: member.key })).status).toBe(401);
    // The payload's user must show the key that replaced it, as the profile does from now on.
    expect(report.user.accessKey).not.toBe(member.key);
    expect(report.user.accessKeyInfo.hint).toBe(await currentKeyHint(member.id));
    expect(keyHint(report.user.accessKey)).toBe(await currentKeyHint(member.id));
    expect(report.user.accessKeyInfo.leakReportedAt).not.toBeNull();
    expect(report.user.accessKeyInfo.leakedKeyHint).toBe(keyHint(member.key));
    expect((await app.gql('{ me { id } }', { key: report.user.accessKey })).status).toBe(200);
    // Each key shown has its own view: the revoked one read first, the new one shown by the payload.
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND target_user_id = $2 AND id > $3`,
      [admin.id, member.id, since],
    );
    expect(n).toBe(2);
  });

  it('"Edit, then Save" that issues a missing key after the request read none: the payload shows the new key', async () => {
    const imported = await createUser(app, admin, { role: Role.MANAGER });
    await app.dataSource.query(`DELETE FROM access_keys WHERE user_id = $1`, [imported.id]);
    const response = await app.gql(
      `mutation ($id: ID!) {
        before: setUserRole(id: $id, role: MANAGER) { accessKey }
        save: updateUser(id: $id, input: {}) { accessKey accessKeyInfo { hint } }
      }`,
      { key: admin.key, variables: { id: imported.id } },
    );
    expect(response.body.errors).toBeUndefined();
    const { before, save } = response.body.data!;
    expect(before.accessKey).toBeNull();
    const hint = await currentKeyHint(imported.id);
    expect(hint).not.toBeNull();
    expect(save.accessKeyInfo?.hint).toBe(hint);
    expect(save.accessKey).not.toBeNull();
    expect(keyHint(save.accessKey)).toBe(hint);
  });
});
