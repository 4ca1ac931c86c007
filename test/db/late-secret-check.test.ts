import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client } from 'pg';

import { KeyCrypto } from '../../src/access-keys/key-crypto';
import { createOrganization } from '../factories/organizations';
import { emptyDatabases } from '../helpers/empty-databases';
import { type BuiltServer, spawnBuiltServer } from '../helpers/processes';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** pino's error level: the lines an operator is paged for. */
const ERROR_LEVEL = 50;

/**
 * DESIGN: "Losing ACCESS_KEY_SECRET makes stored keys unreadable, so startup refuses a secret that doesn't match
 * the database." An instance started before `npm run migrate` has nothing to check its secret against at
 * start; it is checked once the migrations are applied, before /graphql serves anything with the database.
 */
describe('the secret of an instance started before the migrations', () => {
  const secretA = randomBytes(32);
  const secretB = randomBytes(32);
  const { admin, create } = emptyDatabases('crm_access_late_secret');
  /** A new database that no migration has touched yet. */
  const unmigratedDatabase = async () => (await create()).url;

  /**
   * An app on `url` with this secret that checks it as a process start does, logging at warn and above; `env`
   * adds settings.
   */
  const startWithSecret = (url: string, secret: Buffer, env: NodeJS.ProcessEnv = {}) =>
    startTestApp({
      database: { url, secret },
      secretCheckAtStart: true,
      captureLogs: true,
      env: { LOG_LEVEL: 'warn', AUTH_FAILURE_LIMIT: '100000', ...env },
    });

  /** Runs `test` with such an app under `secret` on a new unmigrated database, and closes the app after it. */
  async function onUnmigratedDatabase(
    secret: Buffer,
    test: (app: TestApp, url: string) => Promise<void>,
  ): Promise<void> {
    const url = await unmigratedDatabase();
    const app = await startWithSecret(url, secret);
    try {
      await test(app, url);
    } finally {
      await app.close();
    }
  }

  /**
   * Runs the migrations (as `npm run migrate` would) and sets the database up under secret A as its first
   * start does: the fingerprint recorded, an organization with its admin's key.
   */
  async function migrateAndSetUpUnderA(url: string): Promise<{ key: string; fingerprint: Buffer }> {
    const setup = await startTestApp({ database: { url, secret: secretA } });
    try {
      await setup.dataSource.runMigrations({ transaction: 'each' });
      await setup.dataSource.query(`INSERT INTO key_secret_fingerprint (fingerprint) VALUES ($1)`, [
        new KeyCrypto(secretA).fingerprint,
      ]);
      const adminUser = await createOrganization(setup, 'Late Secret Clinic');
      return { key: adminUser.key, fingerprint: new KeyCrypto(secretA).fingerprint };
    } finally {
      await setup.close();
    }
  }

  const errorLines = (app: TestApp) =>
    app.logs.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((l) => l.level >= ERROR_LEVEL);
  const readyz = (app: TestApp) => fetch(app.url.replace(/\/graphql$/, '/readyz'));
  const storedFingerprint = async (app: TestApp) =>
    ((await app.dataSource.query(`SELECT fingerprint FROM key_secret_fingerprint`)) as Array<{ fingerprint: Buffer }>)
      .map((row) => row.fingerprint.toString('hex'))
      .join(',');

  it('while migrations are pending, /graphql answers 503 SERVICE_UNAVAILABLE with Retry-After and logs no error', async () => {
    await onUnmigratedDatabase(secretB, async (app) => {
      for (const request of [{}, { key: 'cak_not_a_real_key_at_all' }]) {
        const response = await app.gql('{ __typename }', request);
        expect(response.status).toBe(503);
        expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
        expect(response.body.data ?? undefined).toBeUndefined();
        // With the request's id, as every 503 carries it (it had none here).
        expect(response.body.errors?.[0].extensions).toEqual({
          code: 'SERVICE_UNAVAILABLE',
          requestId: response.headers.get('x-request-id'),
        });
      }
      expect(errorLines(app)).toEqual([]);
    });
  });

  it('once the database is migrated and set up under another secret, it serves nothing, is not ready, and says why in one error line', async () => {
    await onUnmigratedDatabase(secretB, async (app, url) => {
      expect((await app.gql('{ __typename }')).status).toBe(503);
      const { key, fingerprint } = await migrateAndSetUpUnderA(url);
      const keysBefore = await app.dataSource.query(`SELECT user_id, key_digest FROM access_keys ORDER BY user_id`);

      const me = await app.gql('{ me { id } }', { key });
      expect(me.body.data ?? undefined).toBeUndefined();
      expect(me.status).toBe(503);
      const anonymous = await app.gql('{ __typename }');
      expect(anonymous.body.data ?? undefined).toBeUndefined();
      expect((await readyz(app)).status).toBe(503);

      // Nothing issued under B, nothing recorded for it.
      expect(await app.dataSource.query(`SELECT user_id, key_digest FROM access_keys ORDER BY user_id`)).toEqual(
        keysBefore,
      );
      expect(await storedFingerprint(app)).toBe(fingerprint.toString('hex'));
      const errors = errorLines(app);
      expect(errors).toHaveLength(1);
      expect(errors[0].msg).toMatch(/ACCESS_KEY_SECRET does not match/);
    });
  });

  it('with the matching secret it serves once migrated, and records its fingerprint when it is the first to check', async () => {
    await onUnmigratedDatabase(secretA, async (app) => {
      expect((await app.gql('{ __typename }')).status).toBe(503);
      await app.dataSource.runMigrations({ transaction: 'each' });
      // Migrated, no fingerprint yet: this instance is the first to check, so its secret is the one recorded.
      expect(await storedFingerprint(app)).toBe('');
      expect((await readyz(app)).status).toBe(200);
      expect(await storedFingerprint(app)).toBe(new KeyCrypto(secretA).fingerprint.toString('hex'));

      const adminUser = await createOrganization(app, 'Matching Secret Clinic');
      const me = await app.gql('{ me { id } }', { key: adminUser.key });
      expect(me.body).toEqual({ data: { me: { id: adminUser.id } } });
      expect(errorLines(app)).toEqual([]);
    });
  });

  it('with the matching secret, the first /graphql request after the migration is served (the check runs before it)', async () => {
    await onUnmigratedDatabase(secretA, async (app, url) => {
      const { key } = await migrateAndSetUpUnderA(url);
      const me = await app.gql('{ me { __typename } }', { key });
      expect(me.body).toEqual({ data: { me: { __typename: 'User' } } });
      expect((await readyz(app)).status).toBe(200);
      expect(errorLines(app)).toEqual([]);
    });
  });

  it('after a mismatching migration, a GitHub secret scanning report is not acted on (503), and nothing is recorded', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-late-secret-'));
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keysFile = path.join(dir, 'secret_scanning.json');
    fs.writeFileSync(
      keysFile,
      JSON.stringify({
        public_keys: [
          { key_identifier: 'github', key: publicKey.export({ type: 'spki', format: 'pem' }), is_current: true },
        ],
      }),
    );
    const url = await unmigratedDatabase();
    const app = await startWithSecret(url, secretB, { SECRET_SCANNING_GITHUB_KEYS: keysFile });
    try {
      const { key } = await migrateAndSetUpUnderA(url);
      const body = JSON.stringify([{ token: key, type: 'crm_access_key', url: 'https://github.com/o/r/blob/1/a.env' }]);
      const response = await fetch(app.url.replace(/\/graphql$/, '/secret-scanning/github'), {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'github-public-key-identifier': 'github',
          'github-public-key-signature': sign('sha256', Buffer.from(body), {
            key: privateKey,
            dsaEncoding: 'der',
          }).toString('base64'),
        },
        body,
      });
      expect(response.status).toBe(503);
      expect(await app.dataSource.query(`SELECT digest FROM secret_scanning_messages`)).toEqual([]);
      expect(errorLines(app)).toHaveLength(1);
    } finally {
      await app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a database connection lost during the check answers 503 and is given back: the check runs again once migrated', async () => {
    const url = await unmigratedDatabase();
    // One connection: a check that kept the one it lost would leave the instance nothing to serve with.
    const app = await startWithSecret(url, secretA, { DB_POOL_SIZE: '1', DB_CONNECT_TIMEOUT_MS: '2000' });
    const locker = new Client({ connectionString: url });
    await locker.connect();
    try {
      // TypeORM's migrations table, empty, as a run of `npm run migrate` that has just begun leaves it (the
      // instance's own checks create nothing). The check's read of it waits behind this lock; its backend is then
      // ended (a failover).
      await locker.query(
        `CREATE TABLE migrations (id SERIAL PRIMARY KEY, timestamp bigint NOT NULL, name character varying NOT NULL)`,
      );
      await locker.query(`BEGIN; LOCK TABLE migrations IN ACCESS EXCLUSIVE MODE`);
      const during = app.gql('{ __typename }');
      const database = new URL(url).pathname.slice(1);
      let terminated = 0;
      while (terminated === 0) {
        const rows = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> $2`,
          [database, (locker as unknown as { processID: number }).processID],
        );
        terminated = rows.rowCount ?? 0;
      }
      await locker.query('ROLLBACK');
      const response = await during;
      expect(response.status).toBe(503);
      expect(response.body.errors?.[0].extensions?.code).toBe('SERVICE_UNAVAILABLE');

      const { key } = await migrateAndSetUpUnderA(url);
      const me = await app.gql('{ me { __typename } }', { key });
      expect(me.body).toEqual({ data: { me: { __typename: 'User' } } });
    } finally {
      await locker.end();
      await app.close();
    }
  });

  describe('as a process (the compiled entry point, DATABASE_URL)', () => {
    let running: BuiltServer | null = null;
    // Here, not in the test's `finally`: a test that times out never reaches its `finally`.
    afterEach(async () => {
      await running?.stop('SIGKILL');
    });

    it('stops with exit status 1 once the mismatch is found, as a refusal at start does', async () => {
      const url = await unmigratedDatabase();
      const server = spawnBuiltServer({ DATABASE_URL: url, ACCESS_KEY_SECRET: secretB.toString('base64') });
      running = server;
      const { graphqlUrl } = await server.listening;
      const { key } = await migrateAndSetUpUnderA(url);
      const response = await fetch(graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-access-key': key },
        body: JSON.stringify({ query: '{ me { id } }' }),
      });
      expect(((await response.json()) as { data?: unknown }).data ?? undefined).toBeUndefined();
      expect(await server.exited).toBe(1);
      const lines = server.output.split('\n').filter((line) => line.startsWith('{'));
      const errors = lines.map((line) => JSON.parse(line) as { level: number; msg: string });
      expect(errors.filter((line) => line.level >= ERROR_LEVEL).map((line) => line.msg)).toEqual([
        expect.stringMatching(/ACCESS_KEY_SECRET does not match/),
      ]);
    });
  });
});
