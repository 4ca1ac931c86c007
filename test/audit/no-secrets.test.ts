import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Representative traffic with every kind of secret the service handles, then a scan of what it keeps:
 * the audit log, the sessions table and every log line must contain none of them.
 */
describe('no key, token or password in audit rows, session rows or logs', () => {
  let app: TestApp;
  const secrets: string[] = [];

  beforeAll(async () => {
    app = await startTestApp({ env: { NODE_ENV: 'development', LOG_LEVEL: 'trace' }, captureLogs: true });
  });
  afterAll(() => app.close());

  it('holds after sign-ins, reveals, regenerations, failures and a masked internal error', async () => {
    const admin = await createOrganization(app, 'Secretive Org', TEST_PASSWORD);
    const member = await createUser(app, admin, { role: Role.MEMBER, password: 'member password 123' });
    secrets.push(TEST_PASSWORD, 'member password 123', admin.key, member.key);

    const token = await login(app, admin);
    const memberToken = await login(app, member);
    secrets.push(token, memberToken);
    const bearer = { headers: { authorization: `Bearer ${token}` } };

    const listed = await app.gql(
      '{ users(first: 10) { edges { node { id accessKey accessKeyInfo { hint } } } } }',
      bearer,
    );
    expect(listed.body.errors).toBeUndefined();
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 60) { accessKey } }',
      {
        ...bearer,
        variables: { id: member.id },
      },
    );
    secrets.push(regenerated.body.data!.regenerateAccessKey.accessKey);

    // Failures of every kind, carrying secrets in headers and variables.
    await app.gql('{ me { id } }', { key: admin.key.slice(0, -2) });
    await app.gql('{ me { id } }', { headers: { authorization: `Bearer ${token.slice(0, -3)}xyz` } });
    await app.gql('mutation ($p: String!) { login(email: "nobody@example.test", password: $p) { token } }', {
      variables: { p: 'a guessed password 42' },
    });
    await app.gql('mutation ($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }', {
      headers: { authorization: `Bearer ${memberToken}` },
      variables: { c: 'member password 123', n: 'the new member password' },
    });
    secrets.push('a guessed password 42', 'the new member password');
    await app.gql('{ me { id accessKey } }', { headers: { authorization: `Bearer ${memberToken}` } });
    await app.gql('{ me { id } }', { key: `  ${member.key}  ` });

    // An internal error (a ciphertext that will not open) is logged in full and masked for the client.
    await app.dataSource.query(`UPDATE access_keys SET key_ciphertext = '\\x00' WHERE user_id = $1`, [admin.id]);
    const broken = await app.gql('{ me { accessKey } }', bearer);
    expect(broken.body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
    await app.services.rateLimiter.flush();

    const auditRows: Array<{ row: string }> = await app.dataSource.query(
      `SELECT to_jsonb(a)::text AS row FROM audit_events a`,
    );
    const sessionRows: Array<{ row: string }> = await app.dataSource.query(
      `SELECT to_jsonb(s)::text AS row FROM sessions s`,
    );
    expect(auditRows.length).toBeGreaterThan(10);
    expect(sessionRows.length).toBeGreaterThanOrEqual(2);
    expect(app.logs.length).toBeGreaterThan(10);
    expect(app.logs.some((line) => line.includes('unexpected error in a resolver'))).toBe(true);
    expect(app.logs.some((line) => line.includes('request completed'))).toBe(true);
    // Structured JSON, and every line written while serving a request carries its id.
    const parsed = app.logs.map((line) => JSON.parse(line) as { msg: string; reqId?: string });
    expect(parsed.filter((line) => !line.reqId).map((line) => line.msg)).toEqual([
      expect.stringMatching(/^Server listening/),
    ]);

    const haystacks = { audit: auditRows.map((r) => r.row), sessions: sessionRows.map((r) => r.row), logs: app.logs };
    for (const [where, lines] of Object.entries(haystacks)) {
      for (const line of lines) {
        for (const secret of secrets) {
          const needle = secret.startsWith('ca') ? secret.slice(4, 30) : secret;
          if (line.includes(needle)) throw new Error(`a secret leaked into ${where}: ${line.slice(0, 300)}`);
        }
        expect(line).not.toMatch(/ca[ks]_[0-9A-Za-z]{20,}/);
      }
    }
  });
});
