import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDataSource } from '../../src/db/data-source';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { TEST_DB_DEFAULTS } from '../helpers/database-url';
import { startTestApp, type TestApp } from '../helpers/test-app';

const DEADLINE_MS = 250;
const REGENERATE = 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }';

/** Retries while the database is coming back: a pool may hold connections the restart broke. */
async function until<T>(attempt: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt().catch((error: unknown) => error as T);
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Two instances on one PostgreSQL of this test's own (it restarts it, so it can't share the suite's).
 * A key cached by instance B and regenerated through instance A must be refused by B within 250 ms.
 */
describe('revocation reaches every instance', () => {
  let tempDir: string;
  let postgres: EmbeddedPostgres;
  let a: TestApp;
  let b: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-revocation-'));
    fs.chmodSync(tempDir, 0o755);
    postgres = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), log: () => undefined });
    const migrator = createDataSource({ url: postgres.url, db: TEST_DB_DEFAULTS });
    await migrator.initialize();
    await migrator.runMigrations();
    await migrator.destroy();
    const secret = randomBytes(32);
    const env = { AUTH_FAILURE_LIMIT: '100000' };
    a = await startTestApp({ env, database: { url: postgres.url, secret } });
    b = await startTestApp({ env, database: { url: postgres.url, secret } });
    admin = await createOrganization(a);
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await postgres?.stop();
    fs.rmSync(tempDir, { recursive: true, force: true });
  });

  async function trial(): Promise<number> {
    const user = await until(() => createUser(a, admin), (u) => !!(u as TestUser)?.key);
    // Warm the key into B's cache: the second request must not touch the database.
    await until(() => b.gql('{ me { id } }', { key: user.key }), (r) => r.status === 200);
    const before = b.queries.count;
    expect((await b.gql('{ me { id } }', { key: user.key })).status).toBe(200);
    expect(b.queries.since(before).filter((sql) => sql.includes('k.key_digest = $1'))).toEqual([]);

    await until(() => a.gql(REGENERATE, { key: admin.key, variables: { id: user.id } }), (r) => !!r.body?.data?.regenerateAccessKey);
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
    await until(async () => b.services.notifications.isListening, (listening) => listening === false);
    expect(b.services.authCache.size).toBe(0);
    postgres = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), log: () => undefined, port: postgres.port });
    await until(async () => b.services.notifications.isListening, (listening) => listening === true);

    const elapsed = [];
    for (let i = 0; i < 5; i++) elapsed.push(await trial());
    for (const ms of elapsed) expect(ms).toBeLessThanOrEqual(DEADLINE_MS);
  }, 60_000);
});
