import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { ScaleIndexes1764700000000 } from '../../migrations/1764700000000-ScaleIndexes';
import { loadConfig } from '../../src/config';
import { createDataSource, MIGRATIONS } from '../../src/db/data-source';
import { openDatabase } from '../../src/db/runtime';
import { createLogger } from '../../src/logger';
import { TEST_DB_DEFAULTS } from '../helpers/database-url';
import { emptyDatabases } from '../helpers/empty-databases';
import { until } from '../helpers/until';

/**
 * Issue 17: organizations with millions of audit events and 100k users. Upgrading such a database builds
 * indexes on audit_events and users and rewrites users: the migrations must neither run into the pool's
 * DB_STATEMENT_TIMEOUT_MS nor hold the writes of the running instances (every key reveal writes an audit row)
 * while ScaleIndexes builds its indexes.
 */
describe('migrations on a large database', () => {
  const { admin, create: emptyDatabase } = emptyDatabases('crm_access_bigmig');
  const secret = randomBytes(32).toString('base64');

  const SCALE_INDEXES = [
    'audit_events_organization_id_idx',
    'audit_events_organization_action_idx',
    'audit_events_organization_actor_idx',
    'audit_events_organization_target_idx',
    'audit_events_created_at_idx',
    'users_name_trgm_idx',
    'users_email_trgm_idx',
  ];

  /** A new database migrated up to just before ScaleIndexes (all of them, then the later ones undone). */
  async function databaseBeforeScaleIndexes(): Promise<{ name: string; url: string }> {
    const database = await emptyDatabase();
    const dataSource = createDataSource({ url: database.url, db: TEST_DB_DEFAULTS });
    await dataSource.initialize();
    try {
      await dataSource.runMigrations();
      const later = MIGRATIONS.length - MIGRATIONS.indexOf(ScaleIndexes1764700000000);
      for (let i = 0; i < later; i++) await dataSource.undoLastMigration();
      const [last] = await dataSource.query(`SELECT name FROM migrations ORDER BY id DESC LIMIT 1`);
      expect(last.name).not.toBe('ScaleIndexes1764700000000');
    } finally {
      await dataSource.destroy();
    }
    return database;
  }

  /** A process start with MIGRATE_ON_START on `url` and the given DB_* settings; its log lines go to `logs`. */
  function start(url: string, env: Record<string, string> = {}, logs: string[] = []) {
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: url, ACCESS_KEY_SECRET: secret, ...env });
    const logger = createLogger({ level: 'info', destination: { write: (line: string) => void logs.push(line) } });
    return openDatabase({ config, logger, migrate: true });
  }

  async function connect(url: string): Promise<Client> {
    const client = new Client({ connectionString: url });
    await client.connect();
    return client;
  }

  /**
   * A connection in an open transaction that inserted an audit event ('HELD', not committed): an index build on
   * audit_events waits for it to end (a concurrent one too), as it would for the writes of running instances.
   * `pid` is its pg_backend_pid.
   */
  async function holdAuditEvents(url: string): Promise<{ holder: Client; pid: number }> {
    const holder = await connect(url);
    await holder.query(`BEGIN`);
    await holder.query(`INSERT INTO audit_events (action, actor_kind) VALUES ('HELD', 'SYSTEM')`);
    const [{ pid }] = (await holder.query(`SELECT pg_backend_pid() AS pid`)).rows;
    return { holder, pid };
  }

  /** Each of ScaleIndexes' indexes by name: whether it is valid (pg_index.indisvalid), or null when missing. */
  async function indexValidity(url: string): Promise<Record<string, boolean | null>> {
    const client = await connect(url);
    try {
      const { rows } = await client.query(
        `SELECT name, (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(name)) AS valid
           FROM unnest($1::text[]) AS name`,
        [SCALE_INDEXES],
      );
      return Object.fromEntries(rows.map((row) => [row.name, row.valid]));
    } finally {
      await client.end();
    }
  }

  const allValid = Object.fromEntries(SCALE_INDEXES.map((name) => [name, true]));

  /**
   * Resolves once a session of `database` other than `holder` waits for a lock `holder` (a pg_backend_pid) holds
   * and its statement has run `atLeastMs` by the database's clock; returns that statement. Throws when
   * `settled()` says the migration ended meanwhile, or after 15 s.
   */
  async function waiterBehind(
    database: string,
    holder: number,
    params: { atLeastMs?: number; settled: () => unknown },
  ): Promise<string> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { rows } = await admin.query(
        `SELECT query FROM pg_stat_activity
          WHERE datname = $1 AND wait_event_type = 'Lock' AND $2::int = ANY(pg_blocking_pids(pid))
            AND clock_timestamp() - query_start >= make_interval(secs => $3::float8 / 1000)`,
        [database, holder, params.atLeastMs ?? 0],
      );
      if (rows.length > 0) return rows[0].query as string;
      const settled = params.settled();
      if (settled) throw new Error(`the migration ended before it waited: ${String(settled)}`);
      if (Date.now() > deadline) throw new Error('no statement waited for the holder');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Tracks how `promise` settled: null while pending, else 'ok' or the rejection. */
  function watch(promise: Promise<unknown>): () => unknown {
    let outcome: unknown = null;
    promise.then(
      () => (outcome = 'ok'),
      (error: unknown) => (outcome = error ?? 'rejected'),
    );
    return () => outcome;
  }

  it('run with no statement timeout, however long a statement takes; the pool keeps DB_STATEMENT_TIMEOUT_MS', async () => {
    const { name, url } = await databaseBeforeScaleIndexes();
    // An index build that outlasts DB_STATEMENT_TIMEOUT_MS, deterministically: an open transaction that wrote to
    // audit_events holds it (as millions of rows would), until the build has run twice the timeout.
    const { holder, pid } = await holdAuditEvents(url);
    let opening: ReturnType<typeof start> | null = null;
    try {
      opening = start(url, { DB_STATEMENT_TIMEOUT_MS: '200', DB_POOL_SIZE: '3' });
      const settled = watch(opening);
      expect(await waiterBehind(name, pid, { atLeastMs: 400, settled })).toMatch(/CREATE INDEX/);
      await holder.query(`COMMIT`);

      const database = await opening;
      opening = null;
      try {
        expect(await database.dataSource.showMigrations()).toBe(false);
        // Every connection of the pool at once (the migrations' among them) still has the configured timeout.
        const runners = Array.from({ length: 3 }, () => database.dataSource.createQueryRunner());
        try {
          const timeouts = await Promise.all(
            runners.map(async (runner) => {
              const [row] = await runner.query(`SHOW statement_timeout`);
              return row.statement_timeout as string;
            }),
          );
          expect(timeouts).toEqual(['200ms', '200ms', '200ms']);
          const pids = await Promise.all(
            runners.map(async (runner) => (await runner.query(`SELECT pg_backend_pid() AS pid`))[0].pid),
          );
          expect(new Set(pids).size).toBe(3);
        } finally {
          await Promise.all(runners.map((runner) => runner.release()));
        }
      } finally {
        await database.close();
      }
      expect(await indexValidity(url)).toEqual(allValid);
    } finally {
      await holder.end();
      await opening?.then((database) => database.close()).catch(() => undefined);
    }
  });

  it('ScaleIndexes does not hold writes to audit_events while it waits and builds', async () => {
    const { name, url } = await databaseBeforeScaleIndexes();
    const { holder, pid } = await holdAuditEvents(url);
    const writer = await connect(url);
    let opening: ReturnType<typeof start> | null = null;
    try {
      opening = start(url);
      const settled = watch(opening);
      expect(await waiterBehind(name, pid, { settled })).toMatch(/CREATE INDEX/);

      // A plain CREATE INDEX waits for a SHARE lock behind the holder, and this insert would queue behind it.
      await writer.query(`SET lock_timeout = '2s'`);
      await writer.query(`INSERT INTO audit_events (action, actor_kind) VALUES ('DURING', 'SYSTEM')`);
      expect(settled()).toBeNull();

      await holder.query(`COMMIT`);
      const database = await opening;
      opening = null;
      await database.close();
      expect(await indexValidity(url)).toEqual(allValid);
      const { rows } = await writer.query(`SELECT action FROM audit_events ORDER BY id`);
      expect(rows.map((row) => row.action)).toEqual(['HELD', 'DURING']);
    } finally {
      await holder.end();
      await writer.end();
      await opening?.then((database) => database.close()).catch(() => undefined);
    }
  });

  it('an instance that waits for the migrations lock does not deadlock with ScaleIndexes building concurrently', async () => {
    const { name, url } = await databaseBeforeScaleIndexes();
    // A concurrent build waits for every transaction of the database with an older snapshot: a second instance
    // that waited for the lock inside a statement (which holds one) would wait for the build as it waits for it.
    const { holder, pid } = await holdAuditEvents(url);
    const logs: string[] = [];
    let first: ReturnType<typeof start> | null = null;
    let second: ReturnType<typeof start> | null = null;
    try {
      first = start(url);
      expect(await waiterBehind(name, pid, { settled: watch(first) })).toMatch(/CREATE INDEX/);
      second = start(url, {}, logs);
      const secondSettled = watch(second);
      await until(() => logs.some((line) => /another instance's migrations/.test(line)) || secondSettled() !== null);
      expect(secondSettled()).toBeNull();

      await holder.query(`COMMIT`);
      const results = await Promise.allSettled([first, second]);
      [first, second] = [null, null];
      for (const result of results) if (result.status === 'fulfilled') await result.value.close();
      expect(results.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok'))).toEqual([
        'ok',
        'ok',
      ]);
      expect(await indexValidity(url)).toEqual(allValid);
    } finally {
      await holder.end();
      for (const opening of [first, second]) await opening?.then((database) => database.close()).catch(() => undefined);
    }
  });

  it('ScaleIndexes rebuilds an index an earlier failed concurrent build left INVALID under its name', async () => {
    const { url } = await databaseBeforeScaleIndexes();
    const client = await connect(url);
    try {
      // A concurrent build that fails (duplicates under a unique index) leaves its index behind, INVALID.
      await client.query(`INSERT INTO audit_events (action, actor_kind) VALUES ('SAME', 'SYSTEM'), ('SAME', 'SYSTEM')`);
      await expect(
        client.query(`CREATE UNIQUE INDEX CONCURRENTLY audit_events_created_at_idx ON audit_events (action)`),
      ).rejects.toThrow(/could not create unique index/);
      expect((await indexValidity(url)).audit_events_created_at_idx).toBe(false);

      const database = await start(url);
      await database.close();
      expect(await indexValidity(url)).toEqual(allValid);
      const { rows } = await client.query(`SELECT pg_get_indexdef('audit_events_created_at_idx'::regclass) AS def`);
      expect(rows[0].def).toMatch(
        /^CREATE INDEX audit_events_created_at_idx ON public\.audit_events USING btree \(created_at\)$/,
      );
    } finally {
      await client.end();
    }
  });
});
