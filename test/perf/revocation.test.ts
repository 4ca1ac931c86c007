import { randomBytes } from 'node:crypto';

import { KEY_LOOKUP_MARK } from '../../src/access-keys/access-key.service';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { OwnPostgres, until } from '../helpers/own-postgres';
import { startTestApp, type TestApp } from '../helpers/test-app';

const DEADLINE_MS = 250;
const REGENERATE = 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }';

/**
 * Two instances on one PostgreSQL of this test's own (it restarts it, so it can't share the suite's).
 * A key cached by instance B and regenerated through instance A must be refused by B within 250 ms.
 */
describe('revocation reaches every instance', () => {
  let postgres: OwnPostgres;
  let a: TestApp;
  let b: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    postgres = await OwnPostgres.start();
    const secret = randomBytes(32);
    const env = { AUTH_FAILURE_LIMIT: '100000' };
    a = await startTestApp({ env, database: { url: postgres.url, secret } });
    b = await startTestApp({ env, database: { url: postgres.url, secret } });
    admin = await createOrganization(a);
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await postgres?.destroy();
  });

  async function trial(): Promise<number> {
    const user = await until(
      () => createUser(a, admin),
      (u) => !!(u as TestUser)?.key,
    );
    // Warm the key into B's cache: the second request must not touch the database.
    await until(
      () => b.gql('{ me { id } }', { key: user.key }),
      (r) => r.status === 200,
    );
    const before = b.queries.count;
    expect((await b.gql('{ me { id } }', { key: user.key })).status).toBe(200);
    expect(b.queries.since(before).filter((sql) => sql.includes(KEY_LOOKUP_MARK))).toEqual([]);

    await until(
      () => a.gql(REGENERATE, { key: admin.key, variables: { id: user.id } }),
      (r) => !!r.body?.data?.regenerateAccessKey,
    );
    const regeneratedAt = performance.now();
    for (;;) {
      const response = await b.gql('{ me { id } }', { key: user.key });
      const elapsed = performance.now() - regeneratedAt;
      if (response.status === 401) return elapsed;
      if (elapsed > DEADLINE_MS) return elapsed;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  it('refuses a regenerated key on the other instance within 250 ms, 20 times in a row', async () => {
    const elapsed = [];
    for (let i = 0; i < 20; i++) elapsed.push(await trial());
    for (const ms of elapsed) expect(ms).toBeLessThanOrEqual(DEADLINE_MS);
  }, 60_000);

  it('still does after PostgreSQL restarts under both instances', async () => {
    await postgres.stop();
    // While the listener is down, B forgets what it cached and stops caching.
    await until(
      async () => b.services.notifications.isListening,
      (listening) => listening === false,
    );
    expect(b.services.authCache.size).toBe(0);
    await postgres.restart();
    await until(
      async () => b.services.notifications.isListening,
      (listening) => listening === true,
    );

    const elapsed = [];
    for (let i = 0; i < 5; i++) elapsed.push(await trial());
    for (const ms of elapsed) expect(ms).toBeLessThanOrEqual(DEADLINE_MS);
  }, 60_000);
});
