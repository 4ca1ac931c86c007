import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const LOGIN =
  'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token expiresAt user { id } } }';
const ME = '{ me { id } }';

describe('sessions: people sign in', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { SESSION_TTL: '2h' } });
    admin = await createOrganization(app, 'Session Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

  it('signs in (email in any case), uses the token, logs out, and the token is then refused', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const response = await app.gql(LOGIN, {
      variables: { email: person.email.toUpperCase(), password: TEST_PASSWORD },
    });
    const { token, expiresAt, user } = response.body.data!.login;
    expect(token).toMatch(/^cas_[0-9A-Za-z]{38}$/);
    expect(user.id).toBe(person.id);
    const ttlMs = new Date(expiresAt).getTime() - Date.now();
    expect(ttlMs).toBeGreaterThan(2 * 3600_000 - 60_000);
    expect(ttlMs).toBeLessThanOrEqual(2 * 3600_000);

    expect((await app.gql(ME, bearer(token))).body.data!.me.id).toBe(person.id);
    expect((await app.gql('mutation { logout }', bearer(token))).body.data!.logout).toBe(true);
    const after = await app.gql(ME, bearer(token));
    expect(after.status).toBe(401);
    expect(after.body.errors![0].extensions).toEqual({ code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' });
    // A person who signed in reads about their session, not about "the key", which they never had.
    expect(after.body.errors![0].message).toMatch(/^The session is not valid: .*Sign in again\.$/);
  });

  it('refuses an expired session', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    await app.dataSource.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1`, [
      person.id,
    ]);
    const response = await app.gql(ME, bearer(token));
    expect(response.status).toBe(401);
    expect(response.body.errors![0].extensions!.reason).toBe('INVALID_CREDENTIALS');
    expect(response.body.errors![0].message).toMatch(/^The session is not valid: /);
  });

  it('stores only the digest of a token', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    const rows = await app.dataSource.query(`SELECT to_jsonb(s)::text AS row FROM sessions s WHERE user_id = $1`, [
      person.id,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0].row).not.toContain(token.slice(4));
    expect(rows[0].row).not.toContain(Buffer.from(token).toString('hex'));
  });

  it('a malformed token is refused as MALFORMED_CREDENTIALS, and a session token is not an access key', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    const truncated = await app.gql(ME, bearer(token.slice(0, -1)));
    expect(truncated.body.errors![0].extensions!.reason).toBe('MALFORMED_CREDENTIALS');
    // Used once as it should be, so the instance has it cached: the cache must not admit it as a key either.
    expect((await app.gql(ME, bearer(token))).body.data!.me.id).toBe(person.id);
    const inKeyHeader = await app.gql(ME, { key: token });
    expect(inKeyHeader.body.errors![0].extensions!.reason).toBe('MALFORMED_CREDENTIALS');
    expect(inKeyHeader.body.errors![0].message).toMatch(/Authorization: Bearer/);
  });

  it('answers an unknown email and a wrong password alike, in about the same time', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const attempt = async (email: string, password: string) => {
      const started = process.hrtime.bigint();
      const response = await app.gql(LOGIN, { variables: { email, password } });
      return {
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        errors: response.body.errors,
        data: response.body.data,
      };
    };
    const unknown = [];
    const wrong = [];
    for (let i = 0; i < 3; i++) {
      unknown.push(await attempt(`nobody-${i}@example.test`, TEST_PASSWORD));
      wrong.push(await attempt(person.email, 'not the password at all'));
    }
    for (const result of [...unknown, ...wrong]) {
      expect(result.data).toBeNull();
      expect(result.errors).toEqual([
        {
          message: 'Email or password is incorrect.',
          path: ['login'],
          locations: expect.any(Array),
          extensions: { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' },
        },
      ]);
    }
    // Both verify one memory-hard hash; without the dummy hash an unknown email answers many times faster.
    const median = (list: Array<{ ms: number }>) => list.map((r) => r.ms).sort((a, b) => a - b)[1];
    const ratio = median(unknown) / median(wrong);
    expect(ratio).toBeGreaterThan(0.33);
    expect(ratio).toBeLessThan(3);
  });

  it('a user without a password cannot sign in (access key only)', async () => {
    const integration = await createUser(app, admin);
    const response = await app.gql(LOGIN, { variables: { email: integration.email, password: TEST_PASSWORD } });
    expect(response.body.errors![0].extensions!.code).toBe('UNAUTHENTICATED');
  });

  it('deactivation ends live sessions and blocks sign-in; reactivation lets them sign in again', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD, role: Role.MANAGER });
    const token = await login(app, person);
    await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', {
      key: admin.key,
      variables: { id: person.id },
    });
    expect((await app.gql(ME, bearer(token))).status).toBe(401);
    const refused = await app.gql(LOGIN, { variables: { email: person.email, password: TEST_PASSWORD } });
    expect(refused.body.errors![0].message).toBe('Email or password is incorrect.');

    await app.gql('mutation ($id: ID!) { reactivateUser(id: $id) { id } }', {
      key: admin.key,
      variables: { id: person.id },
    });
    expect((await app.gql(ME, bearer(token))).status).toBe(401);
    const fresh = await login(app, person);
    expect((await app.gql(ME, bearer(fresh))).body.data!.me.id).toBe(person.id);
  });

  it('changePassword checks the current password, ends the other sessions and keeps this one', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const here = await login(app, person);
    const elsewhere = await login(app, person);
    const CHANGE = 'mutation ($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }';

    const wrong = await app.gql(CHANGE, {
      ...bearer(here),
      variables: { c: 'wrong password!!', n: 'a brand new password' },
    });
    expect(wrong.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'currentPassword' });
    const short = await app.gql(CHANGE, { ...bearer(here), variables: { c: TEST_PASSWORD, n: 'short' } });
    expect(short.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'newPassword' });
    expect((await app.gql(ME, bearer(elsewhere))).status).toBe(200);

    const changed = await app.gql(CHANGE, {
      ...bearer(here),
      variables: { c: TEST_PASSWORD, n: 'a brand new password' },
    });
    expect(changed.body.data!.changePassword).toBe(true);
    expect((await app.gql(ME, bearer(here))).status).toBe(200);
    expect((await app.gql(ME, bearer(elsewhere))).status).toBe(401);
    await expect(login(app, person)).rejects.toThrow(/incorrect/);
    await login(app, { email: person.email, password: 'a brand new password' });
  });

  it('logout with an access key is refused: keys end by regeneration', async () => {
    const response = await app.gql('mutation { logout }', { key: admin.key });
    expect(response.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
  });
});
