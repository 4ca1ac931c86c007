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

/**
 * Some proxies (Azure Application Gateway, IIS ARR) write the client's port into X-Forwarded-For: `203.0.113.7:51234`,
 * `[2001:db8::7]:443`. The address is the client's: taken without the port, not replaced with the proxy's own (every
 * client behind that proxy was one client to the failed-authentication limit, so one could lock out all).
 */
describe('TRUST_PROXY=1: an X-Forwarded-For entry with a port', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { TRUST_PROXY: '1', AUTH_FAILURE_LIMIT: '2' } });
  });
  afterAll(() => app.close());

  it.each([
    ['203.0.113.7:51234', '203.0.113.7'],
    ['[2001:db8::7]:443', '2001:db8::7'],
    ['[2001:db8::8]', '2001:db8::8'],
  ])('%s is recorded as %s', async (entry, expected) => {
    const admin = await createOrganization(app);
    const response = await app.gql(
      'mutation ($e: String!) { createUser(input: { email: $e, name: "Ported" }) { id } }',
      { key: admin.key, variables: { e: `xff-port-${expected}@example.test` }, headers: { 'x-forwarded-for': entry } },
    );
    const [event] = await app.dataSource.query(
      `SELECT ip FROM audit_events WHERE target_user_id = $1 AND action = 'USER_CREATED'`,
      [response.body.data!.createUser.id],
    );
    expect(event.ip).toBe(expected);
  });

  it("one client's failures, whatever its ports, limit that client only", async () => {
    const wrong = (entry: string) =>
      app.gql('{ me { id } }', { key: `cak_${'x'.repeat(38)}`, headers: { 'x-forwarded-for': entry } });
    expect((await wrong('198.51.100.1:1001')).status).toBe(401);
    expect((await wrong('198.51.100.1:1002')).status).toBe(401);
    // The same client on another port: the limit holds (no port is a fresh bucket) ...
    expect((await wrong('198.51.100.1:1003')).status).toBe(429);
    // ... and another client behind the same proxy is not locked out by it.
    expect((await wrong('198.51.100.2:1001')).status).toBe(401);
  });
});
