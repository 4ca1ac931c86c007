import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const REGENERATE = `mutation ($id: ID!, $grace: Int) {
  regenerateAccessKey(userId: $id, gracePeriodSeconds: $grace) { accessKey previousKeyExpiresAt user { id } }
}`;
const ME = '{ me { id } }';

describe('regenerateAccessKey', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    // This file presents dozens of replaced keys on purpose; the failed-auth rate limit has its own tests.
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  async function regenerate(userId: string, grace?: number) {
    const response = await app.gql(REGENERATE, { key: admin.key, variables: { id: userId, grace } });
    return response;
  }

  async function works(key: string): Promise<boolean> {
    const response = await app.gql(ME, { key });
    if (response.status === 401) return false;
    expect(response.status).toBe(200);
    return true;
  }

  it('25 parallel regenerations of one user leave one row and exactly one working key, the one admins see', async () => {
    const user = await createUser(app, admin, { role: Role.MEMBER });
    const responses = await Promise.all(Array.from({ length: 25 }, () => regenerate(user.id)));
    const keys = responses.map((response) => {
      expect(response.body.errors).toBeUndefined();
      return response.body.data!.regenerateAccessKey.accessKey as string;
    });
    expect(new Set(keys).size).toBe(25);

    const rows = await app.dataSource.query(`SELECT count(*)::int AS n FROM access_keys WHERE user_id = $1`, [user.id]);
    expect(rows[0].n).toBe(1);

    const working = [];
    for (const key of [...keys, user.key]) if (await works(key)) working.push(key);
    expect(working).toHaveLength(1);

    const shown = await app.gql('query ($id: ID!) { user(id: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(shown.body.data!.user.accessKey).toBe(working[0]);
  });

  it('the old key fails on the very next request', async () => {
    const user = await createUser(app, admin);
    expect(await works(user.key)).toBe(true);
    const response = await regenerate(user.id);
    const newKey = response.body.data!.regenerateAccessKey.accessKey;
    expect(response.body.data!.regenerateAccessKey.previousKeyExpiresAt).toBeNull();

    const old = await app.gql(ME, { key: user.key });
    expect(old.status).toBe(401);
    expect(old.body.errors![0].extensions).toEqual({ code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' });
    expect(await works(newKey)).toBe(true);
  });

  it('with a grace period both keys work until previousKeyExpiresAt, then only the new one', async () => {
    const user = await createUser(app, admin);
    const response = await regenerate(user.id, 2);
    const { accessKey: newKey, previousKeyExpiresAt } = response.body.data!.regenerateAccessKey;
    const expiresAt = new Date(previousKeyExpiresAt).getTime();
    expect(expiresAt).toBeGreaterThan(Date.now());

    expect(await works(user.key)).toBe(true);
    expect(await works(newKey)).toBe(true);
    const info = await app.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { previousKeyExpiresAt } } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(info.body.data!.user.accessKeyInfo.previousKeyExpiresAt).toBe(previousKeyExpiresAt);

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 300));
    expect(await works(user.key)).toBe(false);
    expect(await works(newKey)).toBe(true);
  });

  it('a regeneration without grace after one with grace ends the earlier grace period at once', async () => {
    const user = await createUser(app, admin);
    const withGrace = (await regenerate(user.id, 3600)).body.data!.regenerateAccessKey;
    expect(withGrace.previousKeyExpiresAt).not.toBeNull();
    expect(await works(user.key)).toBe(true);

    const withoutGrace = (await regenerate(user.id)).body.data!.regenerateAccessKey;
    expect(withoutGrace.previousKeyExpiresAt).toBeNull();
    expect(await works(user.key)).toBe(false);
    expect(await works(withGrace.accessKey)).toBe(false);
    expect(await works(withoutGrace.accessKey)).toBe(true);
    const info = await app.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { previousKeyExpiresAt } } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(info.body.data!.user.accessKeyInfo.previousKeyExpiresAt).toBeNull();
  });

  it('a second regeneration with grace keeps only the key it replaces working, for the new period', async () => {
    const user = await createUser(app, admin);
    const first = (await regenerate(user.id, 3600)).body.data!.regenerateAccessKey;
    const second = (await regenerate(user.id, 60)).body.data!.regenerateAccessKey;
    expect(await works(user.key)).toBe(false);
    expect(await works(first.accessKey)).toBe(true);
    expect(await works(second.accessKey)).toBe(true);
    expect(new Date(second.previousKeyExpiresAt).getTime()).toBeLessThan(
      new Date(first.previousKeyExpiresAt).getTime(),
    );
  });

  it.each([
    [-1, 'negative'],
    [7 * 24 * 3600 + 1, 'over 7 days'],
  ])('refuses a grace period of %s seconds (%s) and changes nothing', async (grace) => {
    const user = await createUser(app, admin);
    const response = await regenerate(user.id, grace);
    expect(response.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
    expect(response.body.errors![0].message).toMatch(/gracePeriodSeconds/);
    expect(await works(user.key)).toBe(true);
  });

  it('accepts the maximum grace period of 7 days', async () => {
    const user = await createUser(app, admin);
    const response = await regenerate(user.id, 7 * 24 * 3600);
    expect(response.body.errors).toBeUndefined();
    expect(await works(user.key)).toBe(true);
  });

  it('answers NOT_FOUND for an unknown user and BAD_USER_INPUT for a malformed id', async () => {
    const unknown = await regenerate('00000000-0000-4000-8000-000000000000');
    expect(unknown.body.errors![0].extensions!.code).toBe('NOT_FOUND');
    const malformed = await regenerate('not-a-uuid');
    expect(malformed.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
  });
});
