import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser, uniqueEmail } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;
const REGENERATE =
  'mutation ($id: ID!, $grace: Int) { regenerateAccessKey(userId: $id, gracePeriodSeconds: $grace) { accessKey } }';
const REPLACED = { code: 'FORBIDDEN' };

/**
 * A key replaced by a regeneration with a grace period keeps working for its integrations until the period
 * ends, but a replaced credential mints no new ones: it may not reveal, create or regenerate any key.
 */
describe('a replaced key in its grace period', () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;
  let oldKey: string;
  let newKey: string;

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    const owner = await createOrganization(app, 'Replaced Key Org');
    admin = await createUser(app, owner, { role: Role.ADMIN });
    member = await createUser(app, owner);
    oldKey = admin.key;
    // The admin's key leaks; another admin replaces it, keeping the old one for an hour for the integrations.
    const response = await app.gql(REGENERATE, { key: owner.key, variables: { id: admin.id, grace: 3600 } });
    newKey = response.body.data!.regenerateAccessKey.accessKey;
  });
  afterAll(() => app.close());

  async function keyViews(): Promise<number> {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE actor_user_id = $1 AND action IN ('ACCESS_KEY_VIEWED', 'ACCESS_KEY_REGENERATED', 'ACCESS_KEY_CREATED')`,
      [admin.id],
    );
    return n;
  }

  it('still reads non-secret fields and makes ordinary changes', async () => {
    const read = await app.gql(`query ($id: ID!) { me { id role } user(id: $id) { id name } }`, {
      key: oldKey,
      variables: { id: member.id },
    });
    expect(read.body.errors).toBeUndefined();
    expect(read.body.data!.me).toEqual({ id: admin.id, role: 'ADMIN' });
    const save = await app.gql(
      `mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed by integration" }) { name } }`,
      {
        key: oldKey,
        variables: { id: member.id },
      },
    );
    expect(save.body.errors).toBeUndefined();
    expect(save.body.data!.updateUser.name).toBe('Renamed by integration');
  });

  it("reveals no key: its own, another user's, or a page of them", async () => {
    const before = await keyViews();
    for (const query of [
      `{ me { accessKey } }`,
      `query ($id: ID!) { user(id: $id) { accessKey } }`,
      `{ users(first: 10) { edges { node { accessKey } } } }`,
    ]) {
      const response = await app.gql(query, { key: oldKey, variables: { id: member.id } });
      expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
      expect(response.body.errors?.[0]?.extensions).toMatchObject(REPLACED);
    }
    expect(await keyViews()).toBe(before);
  });

  it("regenerates no key, its own or another user's, and the keys stay as they were", async () => {
    const before = await keyViews();
    const [{ digest }] = await app.dataSource.query(
      `SELECT encode(key_digest, 'hex') AS digest FROM access_keys WHERE user_id = $1`,
      [member.id],
    );
    for (const id of [member.id, admin.id]) {
      const response = await app.gql(REGENERATE, { key: oldKey, variables: { id, grace: 0 } });
      expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
      expect(response.body.errors?.[0]?.extensions).toMatchObject(REPLACED);
    }
    const [after] = await app.dataSource.query(
      `SELECT encode(key_digest, 'hex') AS digest FROM access_keys WHERE user_id = $1`,
      [member.id],
    );
    expect(after.digest).toBe(digest);
    // The new key was not ended by the old one: it still reads.
    expect((await app.gql(`{ me { id } }`, { key: newKey })).body.data!.me.id).toBe(admin.id);
    expect(await keyViews()).toBe(before);
  });

  it('creates no user (a new user comes with a new key) and reports no leak', async () => {
    const email = uniqueEmail('minted');
    const created = await app.gql(
      `mutation ($email: String!) { createUser(input: { email: $email, name: "Minted" }) { id } }`,
      {
        key: oldKey,
        variables: { email },
      },
    );
    expect(created.body.errors?.[0]?.extensions).toMatchObject(REPLACED);
    expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [email])).toEqual([]);
    const report = await app.gql(
      `mutation ($key: String!) { reportLeakedAccessKey(location: "test", key: $key) { revoked } }`,
      {
        key: oldKey,
        variables: { key: member.key },
      },
    );
    expect(report.body.errors?.[0]?.extensions).toMatchObject(REPLACED);
    expect((await app.gql(`{ me { id } }`, { key: member.key })).body.data!.me.id).toBe(member.id);
  });

  it('the new key may do all of it', async () => {
    const response = await app.gql(`query ($id: ID!) { user(id: $id) { accessKey } }`, {
      key: newKey,
      variables: { id: member.id },
    });
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data!.user.accessKey).toMatch(KEY_PATTERN);
  });
});
