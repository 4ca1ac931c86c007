import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { loadConfig } from '../../src/config';
import { createDataSource, MIGRATIONS } from '../../src/db/data-source';
import { MIGRATIONS_LOCK, openDatabase, runMigrationsLocked } from '../../src/db/runtime';
import { createLogger } from '../../src/logger';
import { TEST_DB_DEFAULTS, withDatabase } from '../helpers/database-url';
import { emptyDatabases } from '../helpers/empty-databases';

/**
 * Instances scale out on one PostgreSQL and may all set MIGRATE_ON_START (and `npm run migrate` may run beside
 * them): one applies the migrations, the others wait for it on an advisory lock and then find nothing pending.
 */
describe('migrations started by several instances at once', () => {
  const { admin, create: emptyDatabase } = emptyDatabases('crm_access_miglock');

  const secret = randomBytes(32).toString('base64');

  /** A process start with MIGRATE_ON_START on `url`; its log lines (info and above) go to `logs`. */
  function start(url: string, logs: string[] = []) {
    const config = loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: url,
      ACCESS_KEY_SECRET: secret,
      MIGRATE_ON_START: 'true',
    });
    const logger = createLogger({ level: 'info', destination: { write: (line: string) => void logs.push(line) } });
    return openDatabase({ config, logger, migrate: true });
  }

  /** The rows of TypeORM's migrations table by name, or null while the table does not exist. */
  async function appliedMigrations(database: string): Promise<string[] | null> {
    const client = new Client({ connectionString: withDatabase(process.env.CRM_TEST_SERVER_URL!, database) });
    await client.connect();
    try {
      const [{ exists }] = (await client.query(`SELECT to_regclass('migrations') IS NOT NULL AS exists`)).rows;
      if (!exists) return null;
      return (await client.query(`SELECT name FROM migrations ORDER BY id`)).rows.map((row) => row.name as string);
    } finally {
      await client.end();
    }
  }

  /**
   * Resolves once a session of `database` has tried to take MIGRATIONS_LOCK (pg_try_advisory_lock, its last
   * statement by pg_stat_activity) `tries` times, counted by the distinct starts of that statement seen (it
   * tries every MIGRATIONS_LOCK_RETRY_MS, and this looks every 10 ms). Throws after 15 s.
   */
  async function lockRetries(database: string, tries: number): Promise<void> {
    const deadline = Date.now() + 15_000;
    const starts = new Set<string>();
    for (;;) {
      const { rows } = await admin.query(
        `SELECT query_start::text AS started FROM pg_stat_activity
          WHERE datname = $1 AND query LIKE '%pg_try_advisory_lock%' AND query NOT LIKE '%pg_stat_activity%'`,
        [database],
      );
      for (const row of rows) starts.add(row.started as string);
      if (starts.size >= tries) return;
      if (Date.now() > deadline) throw new Error(`no session tried ${tries} times to take MIGRATIONS_LOCK`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  const names = MIGRATIONS.map((migration) => migration.name);

  it('waits while another session holds the lock, applies nothing meanwhile, then applies each migration once', async () => {
    const { name, url } = await emptyDatabase();
    // A lock_timeout of the database's does not end the wait (it never waits inside the database).
    await admin.query(`ALTER DATABASE ${name} SET lock_timeout = '10ms'`);
    const holder = new Client({ connectionString: url });
    await holder.connect();
    const logs: string[] = [];
    let opening: ReturnType<typeof start> | null = null;
    try {
      await holder.query(`SELECT pg_advisory_lock($1)`, [MIGRATIONS_LOCK]);
      opening = start(url, logs);
      let settled = false;
      void opening.then(
        () => (settled = true),
        () => (settled = true),
      );
      // It tries again and again (the first try, then two more).
      await lockRetries(name, 3);
      expect(await appliedMigrations(name)).toBeNull();
      expect(settled).toBe(false);
      const waiting = logs.map((line) => JSON.parse(line) as { level: number; msg: string });
      expect(waiting.filter((line) => /another instance/.test(line.msg))).toEqual([
        expect.objectContaining({ level: 30, msg: expect.stringMatching(/waits for another instance's migrations/) }),
      ]);

      await holder.query(`SELECT pg_advisory_unlock($1)`, [MIGRATIONS_LOCK]);
      const database = await opening;
      opening = null;
      await database.close();
      expect(await appliedMigrations(name)).toEqual(names);
      expect(logs.map((line) => JSON.parse(line).level as number).every((level) => level < 40)).toBe(true);
    } finally {
      await holder.end();
      await opening?.then((database) => database.close()).catch(() => undefined);
    }
  });

  it('two instances started together on an empty database both start, and each migration is applied once', async () => {
    const { name, url } = await emptyDatabase();
    const results = await Promise.allSettled([start(url), start(url)]);
    for (const result of results) if (result.status === 'fulfilled') await result.value.close();
    expect(results.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok'))).toEqual([
      'ok',
      'ok',
    ]);
    expect(await appliedMigrations(name)).toEqual(names);
  });

  it('a failed migration gives the lock and its connection back: the next attempt is not blocked', async () => {
    const { name, url } = await emptyDatabase();
    // The first migration creates this table: it fails with "relation already exists".
    const blocker = new Client({ connectionString: url });
    await blocker.connect();
    await blocker.query(`CREATE TABLE organizations (id int)`);
    // One connection: one kept by the failed run would leave the data source none.
    const dataSource = createDataSource({ url, db: { ...TEST_DB_DEFAULTS, poolSize: 1 } });
    await dataSource.initialize();
    const logger = createLogger({ level: 'silent' });
    try {
      await expect(runMigrationsLocked(dataSource, logger)).rejects.toThrow(/already exists/);
      const [{ locked }] = (await blocker.query(`SELECT pg_try_advisory_lock($1) AS locked`, [MIGRATIONS_LOCK])).rows;
      expect(locked).toBe(true);
      await blocker.query(`SELECT pg_advisory_unlock($1)`, [MIGRATIONS_LOCK]);
      await blocker.query(`DROP TABLE organizations`);

      expect((await runMigrationsLocked(dataSource, logger)).map((migration) => migration.name)).toEqual(names);
      expect(await appliedMigrations(name)).toEqual(names);
    } finally {
      await dataSource.destroy();
      await blocker.end();
    }
  });
});
