import type { PauseHooks } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A users page that asks for `accessKey` reads its keys' ciphertexts with its rows, then records the views (with
 * the reader's authority confirmed) and only then answers. A regeneration by another admin that commits in
 * between is held there deterministically (PauseHooks: the page's view batch waits before its authority check).
 */
describe('a regeneration that commits while a users page reveals its keys', () => {
  let app: TestApp;
  let reader: TestUser;
  let regenerator: TestUser;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ hooks });
    reader = await createOrganization(app, 'Race Org');
    regenerator = await createUser(app, reader, { role: Role.ADMIN, name: 'Zed Regenerator' });
  });
  afterAll(() => app.close());
  afterEach(() => delete hooks.beforeAuthorityCheck);

  async function pageWithRegeneration(gracePeriodSeconds: number) {
    const target = await createUser(app, reader, { name: `Target ${gracePeriodSeconds}` });
    let issued: string | undefined;
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== reader.id || issued) return;
      const regeneration: any = await app.gql(
        'mutation ($id: ID!, $grace: Int) { regenerateAccessKey(userId: $id, gracePeriodSeconds: $grace) { accessKey } }',
        { key: regenerator.key, variables: { id: target.id, grace: gracePeriodSeconds } },
      );
      expect(regeneration.body.errors).toBeUndefined();
      issued = regeneration.body.data.regenerateAccessKey.accessKey;
    };
    const page: any = await app.gql('{ users(first: 50) { edges { node { id accessKey } } } }', { key: reader.key });
    expect(issued).toBeDefined();
    const shown = page.body.data.users.edges.find((edge: any) => edge.node.id === target.id).node.accessKey;
    return { target, issued: issued!, shown };
  }

  // Known, and the same on main (the page's key rows were read with its users there too): the page shows the
  // key it read, which the committed regeneration had already replaced. Without a grace period that key no
  // longer works; with one it is now the previous key, which `accessKey` otherwise never shows. Marked
  // `failing` so the suite stays green until the view's transaction re-reads (or locks) the key rows.
  it.failing('without a grace period: the page does not show the replaced key, which no longer works', async () => {
    const { target, shown } = await pageWithRegeneration(0);
    expect(shown).not.toBe(target.key);
  });

  it.failing('with a grace period: the page does not show the key now in its grace period', async () => {
    const { target, shown } = await pageWithRegeneration(3600);
    expect(shown).not.toBe(target.key);
  });
});
