import type { PauseHooks } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const REGENERATE =
  'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 0) { accessKey } }';

/** Where a read shows a key with what is known of it (its hint, when it was made). */
const reveals = [
  {
    name: 'a users page',
    query: '{ users(first: 50) { edges { node { id accessKey accessKeyInfo { hint createdAt } } } } }',
    shown: (data: any, targetId: string) => data.users.edges.find((edge: any) => edge.node.id === targetId).node,
  },
  {
    name: 'user(id)',
    query: 'query ($id: ID!) { user(id: $id) { id accessKey accessKeyInfo { hint createdAt } } }',
    shown: (data: any) => data.user,
  },
];

/**
 * A reveal whose key was replaced between the read of its row and the views' commit shows the key that replaced
 * it (page-regeneration-race.test.ts). The same answer's accessKeyInfo must then describe that key too: a hint
 * of the replaced key beside the new key tells an admin the key shown is not the one described.
 */
describe.each(reveals)('a regeneration racing $name with accessKeyInfo', (reveal) => {
  let app: TestApp;
  let reader: TestUser;
  let regenerator: TestUser;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ hooks });
    reader = await createOrganization(app, 'Info Race Org', TEST_PASSWORD);
    regenerator = await createUser(app, reader, { role: Role.ADMIN, name: 'Zed Regenerator' });
  });
  afterAll(async () => {
    await app.close();
  });
  afterEach(() => {
    delete hooks.beforeAuthorityCheck;
  });

  it('the hint shown is the hint of the key shown', async () => {
    const target = await createUser(app, reader, { name: `Target ${Math.random()}` });
    let issued: string | undefined;
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== reader.id || issued) return;
      const regeneration = await app.gql(REGENERATE, {
        key: regenerator.key,
        variables: { id: target.id },
      });
      expect(regeneration.body.errors).toBeUndefined();
      issued = regeneration.body.data!.regenerateAccessKey.accessKey;
    };
    const response = await app.gql(reveal.query, { key: reader.key, variables: { id: target.id } });
    expect(response.body.errors).toBeUndefined();
    const node = reveal.shown(response.body.data, target.id);
    expect(node.accessKey).toBe(issued);
    const [{ key_hint, created_at }] = await app.dataSource.query(
      'SELECT key_hint, created_at FROM access_keys WHERE user_id = $1',
      [target.id],
    );
    expect(node.accessKeyInfo).toEqual({ hint: key_hint, createdAt: created_at.toISOString() });
  });
});
