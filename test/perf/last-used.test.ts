import { KEY_LOOKUP_MARK } from '../../src/access-keys/access-key.service';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

interface UseFacts {
  lastUsedAt: string | null;
  previousKeyLastUsedAt: string | null;
  previousKeyExpiresAt: string | null;
}

/** What an admin reads about the uses of a user's keys. */
async function useFactsOf(app: TestApp, admin: TestUser, userId: string): Promise<UseFacts> {
  const response = await app.gql(
    'query ($id: ID!) { user(id: $id) { accessKeyInfo { lastUsedAt previousKeyLastUsedAt previousKeyExpiresAt } } }',
    {
      key: admin.key,
      variables: { id: userId },
    },
  );
  return response.body.data!.user.accessKeyInfo as UseFacts;
}

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
      const responses = await Promise.all(
        Array.from({ length: 50 }, () => app.gql('{ me { id } }', { key: admin.key })),
      );
      for (const response of responses) expect(response.status).toBe(200);
    }
    await app.services.accessKeys.flushUse();
    expect(Date.now() - started).toBeLessThan(60_000);
    const writes = app.queries.since(before).filter((sql) => /SET last_used_at/.test(sql));
    expect(writes).toHaveLength(1);
    const info = await app.gql('{ me { accessKeyInfo { lastUsedAt } } }', { key: admin.key });
    expect(new Date(info.body.data!.me.accessKeyInfo.lastUsedAt).getTime()).toBeGreaterThanOrEqual(started - 1000);
    // Only the first of the 1,000 requests looked the key up; the rest were answered from the cache.
    const lookups = app.queries.since(before).filter((sql) => sql.includes(KEY_LOOKUP_MARK));
    expect(lookups).toHaveLength(1);
  });

  it('uses are recorded against the key that made them: not onto its replacement, nor from a replaced key in its grace period', async () => {
    const admin = await createOrganization(app);
    const member = await createUser(app, admin);
    const lastUsed = async () =>
      (
        await app.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { lastUsedAt } } }', {
          key: admin.key,
          variables: { id: member.id },
        })
      ).body.data!.user.accessKeyInfo.lastUsedAt as string | null;
    const regenerate = async (gracePeriodSeconds: number) =>
      (
        await app.gql(
          'mutation ($id: ID!, $g: Int) { regenerateAccessKey(userId: $id, gracePeriodSeconds: $g) { accessKey } }',
          {
            key: admin.key,
            variables: { id: member.id, g: gracePeriodSeconds },
          },
        )
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

  it('during a grace period, uses of the old key move previousKeyLastUsedAt, not lastUsedAt, written once a minute like it', async () => {
    const admin = await createOrganization(app);
    const member = await createUser(app, admin);
    const facts = () => useFactsOf(app, admin, member.id);
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      {
        key: admin.key,
        variables: { id: member.id },
      },
    );
    const newKey = regenerated.body.data!.regenerateAccessKey.accessKey as string;
    // The old key was never used: nothing to show yet.
    expect(await facts()).toMatchObject({ lastUsedAt: null, previousKeyLastUsedAt: null });

    const before = app.queries.count;
    const started = Date.now();
    for (let i = 0; i < 20; i++) expect((await app.gql('{ me { id } }', { key: member.key })).status).toBe(200);
    await app.services.accessKeys.flushUse();
    expect(app.queries.since(before).filter((sql) => /SET last_used_at/.test(sql))).toHaveLength(1);
    const afterOldKey = await facts();
    expect(afterOldKey.lastUsedAt).toBeNull();
    expect(new Date(afterOldKey.previousKeyLastUsedAt!).getTime()).toBeGreaterThanOrEqual(started - 1000);

    // The new key's uses move lastUsedAt and leave the old key's last use where it was.
    expect((await app.gql('{ me { id } }', { key: newKey })).status).toBe(200);
    await app.services.accessKeys.flushUse();
    const afterNewKey = await facts();
    expect(afterNewKey.lastUsedAt).not.toBeNull();
    expect(afterNewKey.previousKeyLastUsedAt).toBe(afterOldKey.previousKeyLastUsedAt);

    // A regeneration with a grace period carries the replaced key's last use over to previousKeyLastUsedAt.
    await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 60) { accessKey } }', {
      key: admin.key,
      variables: { id: member.id },
    });
    const handedOver = await facts();
    expect(handedOver.lastUsedAt).toBeNull();
    expect(handedOver.previousKeyLastUsedAt).toBe(afterNewKey.lastUsedAt);
  });

  it('two regenerations in a row, and the end of a grace period: previousKeyLastUsedAt follows the key that still works, and only it', async () => {
    const admin = await createOrganization(app);
    const member = await createUser(app, admin);
    const facts = () => useFactsOf(app, admin, member.id);
    const regenerate = async () =>
      (
        await app.gql(
          'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
          {
            key: admin.key,
            variables: { id: member.id },
          },
        )
      ).body.data!.regenerateAccessKey.accessKey as string;
    const first = member.key;
    const second = await regenerate();
    const third = await regenerate();
    // The first key works no more, and its use (refused) is noted nowhere; the second is the one handed over.
    expect((await app.gql('{ me { id } }', { key: first })).status).toBe(401);
    await app.services.accessKeys.flushUse();
    expect(await facts()).toMatchObject({ lastUsedAt: null, previousKeyLastUsedAt: null });
    expect((await app.gql('{ me { id } }', { key: second })).status).toBe(200);
    await app.services.accessKeys.flushUse();
    const handedOver = await facts();
    expect(handedOver.lastUsedAt).toBeNull();
    expect(handedOver.previousKeyLastUsedAt).not.toBeNull();

    // The grace period ends (moved into the past, as the clock would): the old key's last use is shown no
    // more, the key is refused, and a use of it noted just before the end is written nowhere.
    app.services.accessKeys.markUsed(app.keyCrypto.digest(third).toString('base64'));
    const fourth = await regenerate();
    await app.dataSource.query(
      `UPDATE access_keys SET previous_key_expires_at = now() - interval '1 second' WHERE user_id = $1`,
      [member.id],
    );
    await app.services.accessKeys.flushUse();
    expect((await app.gql('{ me { id } }', { key: third })).status).toBe(401);
    expect(await facts()).toMatchObject({ lastUsedAt: null, previousKeyLastUsedAt: null });
    const [row] = await app.dataSource.query(`SELECT previous_key_last_used_at FROM access_keys WHERE user_id = $1`, [
      member.id,
    ]);
    expect(row.previous_key_last_used_at).toBeNull();
    expect((await app.gql('{ me { id } }', { key: fourth })).status).toBe(200);
  });
});
