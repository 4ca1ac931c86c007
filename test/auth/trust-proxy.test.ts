import { createOrganization } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** TRUST_PROXY decides whether X-Forwarded-For names the client (for audit and the failed-auth limit). */
describe.each([
  ['false', '127.0.0.1'],
  // One proxy: its address is the last X-Forwarded-For entry; what the client wrote before it is ignored.
  ['true', '203.0.113.7'],
  ['1', '203.0.113.7'],
])('TRUST_PROXY=%s', (trustProxy, expectedIp) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { TRUST_PROXY: trustProxy } });
  });
  afterAll(() => app.close());

  it(`records the client as ${expectedIp}`, async () => {
    const admin = await createOrganization(app);
    const response = await app.gql(
      'mutation ($e: String!) { createUser(input: { email: $e, name: "Forwarded" }) { id } }',
      {
        key: admin.key,
        variables: { e: `xff-${trustProxy}@example.test` },
        headers: { 'x-forwarded-for': '198.51.100.66, 203.0.113.7' },
      },
    );
    const [event] = await app.dataSource.query(
      `SELECT ip FROM audit_events WHERE target_user_id = $1 AND action = 'USER_CREATED'`,
      [response.body.data!.createUser.id],
    );
    expect(event.ip).toBe(expectedIp);
  });
});

describe.each([['loopback'], ['1']])('TRUST_PROXY=%s: an X-Forwarded-For entry that is no address', (trustProxy) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { TRUST_PROXY: trustProxy } });
  });
  afterAll(() => app.close());

  it('is not recorded as the client: a key put there is stored nowhere', async () => {
    const admin = await createOrganization(app);
    const response = await app.gql(
      'mutation ($e: String!) { createUser(input: { email: $e, name: "Forwarded" }) { id } }',
      {
        key: admin.key,
        variables: { e: `xff-junk-${trustProxy}@example.test` },
        headers: { 'x-forwarded-for': admin.key },
      },
    );
    const [event] = await app.dataSource.query(
      `SELECT ip FROM audit_events WHERE target_user_id = $1 AND action = 'USER_CREATED'`,
      [response.body.data!.createUser.id],
    );
    expect(event.ip).toBe('127.0.0.1');
  });

  it('an IPv6 address with a zone id (`%` and any text after it) is not recorded either', async () => {
    const admin = await createOrganization(app);
    // net.isIP accepts `fe80::1%<zone>` with letters, digits, dots and dashes of any length: a key's body fits.
    const zone = admin.key.slice('cak_'.length);
    const response = await app.gql(
      'mutation ($e: String!) { createUser(input: { email: $e, name: "Zoned" }) { id } }',
      {
        key: admin.key,
        variables: { e: `xff-zone-${trustProxy}@example.test` },
        headers: { 'x-forwarded-for': `fe80::1%${zone}` },
      },
    );
    const [event] = await app.dataSource.query(
      `SELECT ip FROM audit_events WHERE target_user_id = $1 AND action = 'USER_CREATED'`,
      [response.body.data!.createUser.id],
    );
    expect(event.ip).toBe('127.0.0.1');
  });
});
