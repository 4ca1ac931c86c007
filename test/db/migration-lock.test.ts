import { randomBytes } from 'node:crypto';

import { Client } from 'pg';
import { DataSource, type QueryRunner } from 'typeorm';

import { KeyCrypto } from '../../src/access-keys/key-crypto';
import { loadConfig } from '../../src/config';
import { createDataSource, MIGRATIONS } from '../../src/db/data-source';
import { checkSecret, MIGRATIONS_LOCK, openDatabase, runMigrationsLocked } from '../../src/db/runtime';
import { createLogger } from '../../src/logger';
import { TEST_DB_DEFAULTS, withDatabase } from '../helpers/database-url';
import { emptyDatabases } from '../helpers/empty-databases';
import { until as untilValue } from '../helpers/own-postgres';
import { spawnBuiltServer } from '../helpers/processes';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { until } from '../helpers/until';

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

  /** A session of the test's own on `url` that holds MIGRATIONS_LOCK until `release` (or `end`). */
  async function holdLock(url: string): Promise<{ client: Client; release(): Promise<void> }> {
    const client = new Client({ connectionString: url });
    await client.connect();
    await client.query(`SELECT pg_advisory_lock($1)`, [MIGRATIONS_LOCK]);
    return {
      client,
      release: () => client.query(`SELECT pg_advisory_unlock($1)`, [MIGRATIONS_LOCK]).then(() => undefined),
    };
  }

  const endpoint = (app: TestApp, name: 'healthz' | 'readyz') =>
    fetch(app.url.replace(/\/graphql$/, `/${name}`)).then((response) => response.status);
  /** Polls `name` until it answers `status` (the background run's progress is not observable otherwise). */
  async function untilStatus(app: TestApp, name: 'healthz' | 'readyz', status: number): Promise<void> {
    while ((await endpoint(app, name)) !== status) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const logLines = (app: TestApp) =>
    app.logs.map((line) => JSON.parse(line) as { level: number; msg: string; waitedMs?: unknown });

  /** Records the session's settings as a migration sees them, and changes one as a migration may. */
  class SeesItsSession1700000000000 {
    name = 'SeesItsSession1700000000000';
    async up(queryRunner: QueryRunner): Promise<void> {
      await queryRunner.query(
        `CREATE TABLE seen AS SELECT current_setting('application_name') AS application_name,
                current_setting('client_connection_check_interval') AS check_interval,
                current_setting('statement_timeout') AS statement_timeout,
                current_setting('idle_in_transaction_session_timeout') AS idle_timeout`,
      );
      await queryRunner.query(`SET work_mem = '77MB'`);
    }
    async down(): Promise<void> {}
  }

  /**
   * runMigrationsLocked of SeesItsSession on a new database, through a pool of one connection (so the statements
   * after the run get the one the run used) started as the service's are: what `seen` recorded, and the
   * session's settings before and after the run.
   */
  async function sessionOfARun(): Promise<{ seen: unknown[]; before: unknown[]; after: unknown[] }> {
    const { url } = await emptyDatabase();
    const dataSource = new DataSource({
      type: 'postgres',
      url,
      migrations: [SeesItsSession1700000000000],
      poolSize: 1,
      applicationName: 'crm-access',
      extra: { statement_timeout: 1234, idle_in_transaction_session_timeout: 2345 },
    });
    await dataSource.initialize();
    try {
      const settings = () =>
        dataSource.query(
          `SELECT current_setting('application_name') AS application_name,
                  current_setting('client_connection_check_interval') AS check_interval,
                  current_setting('statement_timeout') AS statement_timeout, current_setting('work_mem') AS work_mem,
                  current_setting('idle_in_transaction_session_timeout') AS idle_timeout`,
        );
      const before = await settings();
      await runMigrationsLocked(dataSource, createLogger({ level: 'silent' }));
      return { seen: await dataSource.query(`SELECT * FROM seen`), before, after: await settings() };
    } finally {
      await dataSource.destroy();
    }
  }

  it('the migrations session is named, checks for a lost client (a killed holder frees the lock) and has no timeouts, then is reset', async () => {
    const { seen, before, after } = await sessionOfARun();
    expect(seen).toEqual([
      { application_name: 'crm-access migrations', check_interval: '5s', statement_timeout: '0', idle_timeout: '0' },
    ]);
    expect(before).toEqual([
      expect.objectContaining({ application_name: 'crm-access', statement_timeout: '1234ms', idle_timeout: '2345ms' }),
    ]);
    const { work_mem: _, ...afterButWorkMem } = (after as Array<Record<string, string>>)[0];
    const { work_mem: __, ...beforeButWorkMem } = (before as Array<Record<string, string>>)[0];
    expect(afterButWorkMem).toEqual(beforeButWorkMem);
  });

  it("a migration's own SET does not stay on the pool's connection", async () => {
    const { before, after } = await sessionOfARun();
    expect(before).toEqual([expect.objectContaining({ work_mem: expect.not.stringMatching(/^77MB$/) })]);
    expect(after).toEqual(before);
  });

  describe('a server start that finds the lock taken', () => {
    const startServer = (url: string) =>
      startTestApp({
        database: { url, secret: randomBytes(32) },
        migrateAtStart: true,
        captureLogs: true,
        env: { LOG_LEVEL: 'info' },
      });

    /** startServer on `url` while the test holds MIGRATIONS_LOCK (`body` may let it go); both ended after `body`. */
    async function whileLockHeld(
      url: string,
      body: (app: TestApp, holder: Awaited<ReturnType<typeof holdLock>>) => Promise<void>,
    ): Promise<void> {
      const holder = await holdLock(url);
      let app: TestApp | null = null;
      try {
        app = await startServer(url);
        await body(app, holder);
      } finally {
        await holder.client.end();
        await app?.close();
      }
    }

    it('listens at once (/healthz 200, /readyz 503), then applies the migrations itself once the lock is free', async () => {
      const { name, url } = await emptyDatabase();
      await whileLockHeld(url, async (app, holder) => {
        expect(await endpoint(app, 'healthz')).toBe(200);
        expect(await endpoint(app, 'readyz')).toBe(503);
        // It keeps trying in the background, and writes nothing meanwhile: not even TypeORM's migrations table,
        // whose check-then-create would race the holder's own (either could then stop at start).
        await lockRetries(name, 3);
        expect(await endpoint(app, 'healthz')).toBe(200);
        expect(await endpoint(app, 'readyz')).toBe(503);
        expect(await appliedMigrations(name)).toBeNull();
        expect(logLines(app).filter((line) => /another instance/.test(line.msg))).toEqual([
          expect.objectContaining({ level: 30, msg: expect.stringMatching(/answers 503 until they are applied/) }),
        ]);

        await holder.release();
        await untilStatus(app, 'readyz', 200);
        expect(await appliedMigrations(name)).toEqual(names);
        expect(logLines(app).filter((line) => /got the migrations lock/.test(line.msg))).toEqual([
          expect.objectContaining({ level: 30, waitedMs: expect.any(Number) }),
        ]);
        // A normal wait is not an operator's problem: nothing about it at warn or above, no error at all (the
        // listener's one info line on an unmigrated database is test/health.test.ts's).
        expect(
          logLines(app).filter((line) => line.level >= 50 || (line.level >= 40 && /migrat/.test(line.msg))),
        ).toEqual([]);
      });
    });

    it('applies the migrations still pending after another build applied only its own, older ones', async () => {
      const { name, url } = await emptyDatabase();
      await whileLockHeld(url, async (app, holder) => {
        // The holder is an older build: it applies its migrations (all but the last) and lets go.
        const older = new DataSource({ type: 'postgres', url, migrations: MIGRATIONS.slice(0, -1) });
        await older.initialize();
        try {
          await older.runMigrations({ transaction: 'each' });
        } finally {
          await older.destroy();
        }
        expect(await appliedMigrations(name)).toEqual(names.slice(0, -1));
        expect(await endpoint(app, 'readyz')).toBe(503);
        await holder.release();
        await untilStatus(app, 'readyz', 200);
        expect(await appliedMigrations(name)).toEqual(names);
      });
    });

    it('with another secret, stops once the other instance applied them all, with no request to ask it', async () => {
      const { url } = await emptyDatabase();
      // The database as another instance left it under its own secret, but for its last migration, which that
      // instance (holding the lock) is still applying.
      const other = createDataSource({ url, db: TEST_DB_DEFAULTS });
      await other.initialize();
      try {
        await other.runMigrations({ transaction: 'each' });
        await checkSecret(other, new KeyCrypto(randomBytes(32)));
        await other.query(`DELETE FROM migrations WHERE name = $1`, [names[names.length - 1]]);
      } finally {
        await other.destroy();
      }
      await whileLockHeld(url, async (app, holder) => {
        expect(await endpoint(app, 'readyz')).toBe(503);
        const last = MIGRATIONS[MIGRATIONS.length - 1];
        await holder.client.query(`INSERT INTO migrations (timestamp, name) VALUES ($1, $2)`, [
          Number(/\d+$/.exec(last.name)![0]),
          last.name,
        ]);
        await holder.release();
        // Its background task finds nothing pending: it checks the secret then, as it does after applying.
        const refusal = () =>
          logLines(app).some((line) => line.level === 50 && /set up under another secret/.test(line.msg));
        await until(refusal);
      });
    });

    it('a background attempt that fails logs a warning and is tried again', async () => {
      const { url } = await emptyDatabase();
      await whileLockHeld(url, async (app, holder) => {
        // The first migration creates this table: each attempt fails with "relation already exists".
        await holder.client.query(`CREATE TABLE organizations (id int)`);
        await holder.release();
        const failures = () => logLines(app).filter((line) => /in the background; trying again/.test(line.msg));
        await until(() => failures().length >= 2);
        expect(failures()[0].level).toBe(40);
        expect(logLines(app).filter((line) => line.level >= 50)).toEqual([]);
        await holder.client.query(`DROP TABLE organizations`);
        await untilStatus(app, 'readyz', 200);
      });
    });

    it('as a process (npm start, MIGRATE_ON_START): listens while the lock is held, and stops cleanly on SIGTERM', async () => {
      const { name, url } = await emptyDatabase();
      const holder = await holdLock(url);
      const server = spawnBuiltServer({ DATABASE_URL: url, ACCESS_KEY_SECRET: secret, MIGRATE_ON_START: 'true' });
      try {
        const base = (await server.listening).graphqlUrl.replace(/\/graphql$/, '');
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        expect((await fetch(`${base}/readyz`)).status).toBe(503);
        await lockRetries(name, 2);
        expect(await server.stop('SIGTERM')).toBe(0);
        await holder.release();
        expect(await appliedMigrations(name)).toBeNull();
      } finally {
        await server.stop('SIGKILL');
        await holder.client.end();
      }
    });

    it('closed while waiting, it leaves neither the lock held nor a connection in use', async () => {
      const { name, url } = await emptyDatabase();
      const holder = await holdLock(url);
      try {
        const app = await startServer(url);
        await lockRetries(name, 2);
        // close() ends the data source's pool, which would wait for a connection still out.
        await app.close();
        // A closed connection's backend leaves pg_stat_activity a moment after the client is gone: polled until
        // it has (one still in use would stay, and the wait time out).
        const others = async () =>
          (
            await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> $2`, [
              name,
              (holder.client as unknown as { processID: number }).processID,
            ])
          ).rows[0].n as number;
        expect(await untilValue(others, (left) => left === 0, 10_000)).toBe(0);
        await holder.release();
        expect(await appliedMigrations(name)).toBeNull();
      } finally {
        await holder.client.end();
      }
    });
  });

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
      // Progress: how long it waited once it got the lock, then which migrations it applies, before applying.
      const progress = logs
        .map((line) => JSON.parse(line) as { msg: string; waitedMs?: unknown; migrations?: unknown })
        .filter((line) => /got the migrations lock|applying/.test(line.msg));
      expect(progress).toEqual([
        expect.objectContaining({
          msg: expect.stringMatching(/got the migrations lock/),
          waitedMs: expect.any(Number),
        }),
        expect.objectContaining({ msg: expect.stringMatching(/^applying/), migrations: names }),
      ]);
      const firstApplied = logs.findIndex((line) => /applied migration/.test(line));
      expect(logs.findIndex((line) => /"applying/.test(line))).toBeLessThan(firstApplied);
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
