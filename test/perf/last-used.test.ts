import { createOrganization } from '../factories/organizations';
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
});
