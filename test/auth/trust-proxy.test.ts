import { createOrganization } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** TRUST_PROXY decides whether X-Forwarded-For names the client (for audit and the failed-auth limit). */
describe.each([
  ['false', '127.0.0.1'],
  ['true', '203.0.113.7'],
])('TRUST_PROXY=%s', (trustProxy, expectedIp) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { TRUST_PROXY: trustProxy } });
  });
  afterAll(() => app.close());

  it(`records the client as ${expectedIp}`, async () => {
    const admin = await createOrganization(app);
    const response = await app.gql('mutation { createUser(input: { email: "xff@example.test", name: "Forwarded" }) { id } }', {
      key: admin.key,
      headers: { 'x-forwarded-for': '203.0.113.7' },
    });
    const [event] = await app.dataSource.query(`SELECT ip FROM audit_events WHERE target_user_id = $1 AND action = 'USER_CREATED'`, [
      response.body.data!.createUser.id,
    ]);
    expect(event.ip).toBe(expectedIp);
  });
});
