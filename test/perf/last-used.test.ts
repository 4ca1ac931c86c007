import { createOrganization, createUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

describe('lastUsedAt is written at most once a minute per key', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  it('1,000 authenticated requests with one key inside a minute cause one last_used_at write', async () => {
    const admin = await createOrganization(app);
    const before = app.queries.count;
    const started = Date.now();
    for (let batch = 0; batch < 20; batch++) {
      const responses = await Promise.all(Array.from({ length: 50 }, () => app.gql('{ me { id } }', { key: admin.key })));
      for (const response of responses) expect(response.status).toBe(200);
    }
    await app.services.accessKeys.flushUse();
    expect(Date.now() - started).toBeLessThan(60_000);
    const writes = app.queries.since(before).filter((sql) => /SET last_used_at/.test(sql));
    expect(writes).toHaveLength(1);
    const info = await app.gql('{ me { accessKeyInfo { lastUsedAt } } }', { key: admin.key });
    expect(new Date(info.body.data!.me.accessKeyInfo.lastUsedAt).getTime()).toBeGreaterThanOrEqual(started - 1000);
    // Only the first of the 1,000 requests looked the key up; the rest were answered from the cache.
    const lookups = app.queries.since(before).filter((sql) => sql.includes('k.key_digest = $1'));
    expect(lookups).toHaveLength(1);
  });

  it('uses are recorded against the key that made them: not onto its replacement, nor from a replaced key in its grace period', async () => {
    const admin = await createOrganization(app);
    const member = await createUser(app, admin);
    const lastUsed = async () =>
      (await app.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { lastUsedAt } } }', { key: admin.key, variables: { id: member.id } }))
        .body.data!.user.accessKeyInfo.lastUsedAt as string | null;
    const regenerate = async (gracePeriodSeconds: number) =>
      (
        await app.gql('mutation ($id: ID!, $g: Int) { regenerateAccessKey(userId: $id, gracePeriodSeconds: $g) { accessKey } }', {
          key: admin.key,
          variables: { id: member.id, g: gracePeriodSeconds },
        })
      ).body.data!.regenerateAccessKey.accessKey as string;

    // A use still waiting to be written when the key is replaced is not written onto the new key.
    expect((await app.gql('{ me { id } }', { key: member.key })).status).toBe(200);
    const second = await regenerate(0);
    await app.services.accessKeys.flushUse();
    expect(await lastUsed()).toBeNull();

    // During a grace period the replaced key still works, but "last used" is the new key's.
    const third = await regenerate(3600);
    expect((await app.gql('{ me { id } }', { key: second })).status).toBe(200);
    await app.services.accessKeys.flushUse();
    expect(await lastUsed()).toBeNull();
    expect((await app.gql('{ me { id } }', { key: third })).status).toBe(200);
    await app.services.accessKeys.flushUse();
    expect(await lastUsed()).not.toBeNull();
  });
});
