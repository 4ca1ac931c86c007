import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import type { Logger } from 'pino';
import { type DataSource, type Migration, MigrationExecutor, type QueryRunner } from 'typeorm';

import { KeyCrypto } from '../access-keys/key-crypto';
import { type Config, ConfigError, parseSecrets } from '../config';
import { type EmbeddedPostgres, embeddedPostgresInstalled, startEmbeddedPostgres } from '../dev/embedded-postgres';
import { createDataSource } from './data-source';
import { KeySecretFingerprint } from './key-secret-fingerprint.entity';

const SECRET_FILE = 'access-key-secret';

/** The embedded default keeps its generated secret next to its data, readable by this user only. */
function embeddedSecrets(dataDir: string, logger: Logger): Buffer[] {
  const file = path.join(dataDir, SECRET_FILE);
  // A keyring like ACCESS_KEY_SECRET: one secret a line, current first (see "Rotating the master secret").
  if (fs.existsSync(file)) return parseSecrets(fs.readFileSync(file, 'utf8'), file);
  const secret = randomBytes(32);
  fs.writeFileSync(file, secret.toString('base64'), { mode: 0o600, flag: 'wx' });
  logger.info({ file }, 'generated ACCESS_KEY_SECRET for the embedded database');
  return [secret];
}

export interface Database {
  readonly dataSource: DataSource;
  readonly databaseUrl: string;
  readonly keyCrypto: KeyCrypto;
  /** Whether keyCrypto was checked against the database: at start, or once its pending migrations are applied. */
  readonly secretCheck: SecretCheck;
  /** The names of the migrations this open applied (empty: none was pending); null when it applied none itself. */
  readonly appliedMigrations: readonly string[] | null;
  readonly embedded: EmbeddedPostgres | null;
  /** Stops the background migrations (startMigrations) first, then closes the pool and the embedded database. */
  close(): Promise<void>;
}

/**
 * Connects to DATABASE_URL or, without one, starts the embedded PostgreSQL; applies migrations when asked
 * (always for the embedded default; one instance at a time, see startMigrations) and refuses a secret that
 * does not match the one the keys were stored with. `waitForLock` (default true: the CLI's commands) says
 * whether a run that finds MIGRATIONS_LOCK taken waits for it here; the server passes false and starts in the
 * pending mode instead (see startMigrations). Throws SecretMismatchError (see checkSecret); with migrations still
 * pending the secret is checked later, by the returned `secretCheck`.
 */
export async function openDatabase(params: {
  config: Config;
  logger: Logger;
  migrate?: boolean;
  waitForLock?: boolean;
  /** Told once when the migrations wait for MIGRATIONS_LOCK (waitForLock): the CLI says so on stderr. */
  onLockWait?: (holder: MigrationsLockHolder | null) => void;
  /** False where the caller reports pending migrations itself (the CLI's one line): no server warning then. */
  warnPending?: boolean;
}): Promise<Database> {
  const { config, logger } = params;
  let embedded: EmbeddedPostgres | null = null;
  let url = config.databaseUrl;
  let secret = config.accessKeySecret;
  let olderSecrets = config.olderAccessKeySecrets;
  if (!url) {
    if (!embeddedPostgresInstalled()) {
      throw new ConfigError(
        'DATABASE_URL (or DATABASE_URL_FILE) is required: this installation has no embedded PostgreSQL ' +
          '(the optional package embedded-postgres is not installed, as in the Docker image).',
      );
    }
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, log: (message) => logger.info(message) });
    url = embedded.url;
    if (!secret) [secret, ...olderSecrets] = embeddedSecrets(config.dataDir, logger);
  }
  if (!secret) throw new ConfigError('ACCESS_KEY_SECRET is required with DATABASE_URL (32+ random bytes, base64).');

  const dataSource = createDataSource({ url, db: config.db, logger });
  let stopMigrations: () => Promise<void> = () => Promise.resolve();
  const close = async () => {
    await stopMigrations();
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.stop();
  };
  try {
    await dataSource.initialize();
    const keyCrypto = new KeyCrypto(secret, olderSecrets);
    const started = await startMigrations({
      dataSource,
      keyCrypto,
      logger,
      migrate: params.migrate ?? (embedded !== null || config.migrateOnStart),
      waitForLock: params.waitForLock ?? true,
      onLockWait: params.onLockWait,
      warnPending: params.warnPending,
    });
    stopMigrations = started.stop;
    return {
      dataSource,
      databaseUrl: url,
      keyCrypto,
      secretCheck: started.secretCheck,
      appliedMigrations: started.applied,
      embedded,
      close,
    };
  } catch (error) {
    await close().catch(() => undefined);
    throw embedded ? withEmbeddedSecretSource(error, config) : error;
  }
}

/**
 * The embedded default keeps its secret in DATA_DIR/access-key-secret (a keyring, one secret a line), and an
 * ACCESS_KEY_SECRET in the environment takes that file's place (one left exported after "With your own
 * PostgreSQL", say). A refusal of either names that file, since "ACCESS_KEY_SECRET" alone points at a variable
 * the user may never have set. Other errors are returned unchanged.
 */
function withEmbeddedSecretSource(error: unknown, config: Config): unknown {
  if (!(error instanceof SecretMismatchError)) return error;
  const file = path.join(config.dataDir, SECRET_FILE);
  const where = config.accessKeySecret
    ? `Without DATABASE_URL the embedded PostgreSQL's secret is in ${file}: unset ACCESS_KEY_SECRET (and ` +
      'ACCESS_KEY_SECRET_FILE) to use it.'
    : `Without DATABASE_URL the embedded default reads ACCESS_KEY_SECRET from ${file} (one secret a line, current ` +
      'first): put the secret back there.';
  return new SecretMismatchError(`${error.message} ${where}`);
}

/**
 * The key of the PostgreSQL advisory lock (session level; advisory locks are per database) that the one
 * instance applying migrations holds (runMigrationsLocked): the ASCII bytes of "crmmig" as a bigint key
 * (pg_advisory_lock(bigint)). A constant of this service's own, distinct from AUDIT_RETENTION_LOCK
 * (src/audit/audit-retention.ts).
 */
export const MIGRATIONS_LOCK = 0x63_72_6d_6d_69_67;

/**
 * The application_name of the session that holds MIGRATIONS_LOCK and runs the migrations (the pool's sessions
 * are 'crm-access'): what an operator looks for in pg_stat_activity (README "Upgrading a large database").
 */
export const MIGRATIONS_APPLICATION_NAME = 'crm-access migrations';

/**
 * client_connection_check_interval of that session (PostgreSQL 14+): how soon a running statement notices that
 * its client is gone. Without it, a holder killed mid-statement (a long index build, a migration queued behind a
 * table lock) keeps its backend, so MIGRATIONS_LOCK, until the statement ends: every other run waits for a
 * process that no longer exists.
 */
export const MIGRATIONS_CONNECTION_CHECK_INTERVAL = '5s';

/** How long (ms) a run that found MIGRATIONS_LOCK taken waits before it tries to take it again. */
export const MIGRATIONS_LOCK_RETRY_MS = 500;

/** What startMigrations gives its caller: the start's SecretCheck, and `stop` for its background migrations. */
export interface StartedMigrations {
  readonly secretCheck: SecretCheck;
  /**
   * The names of the migrations this start applied, in order (empty: none was pending); null when it did not
   * apply them itself (not asked to, or another session holds the lock and the background run will).
   */
  readonly applied: readonly string[] | null;
  /**
   * Ends the background migrations, if any: no further attempt; an attempt under way is waited for (its lock
   * and connection are given back as always). Resolves at once when there are none. Never rejects.
   */
  stop(): Promise<void>;
}

/**
 * A start's migrations and secret check (openDatabase's; the tests' startTestApp with migrateAtStart). With
 * `migrate`, applies the pending migrations under MIGRATIONS_LOCK (runMigrationsLocked). When another session
 * holds the lock, `waitForLock` decides: true (the CLI: an operator's command waits, however long) waits here;
 * false (a server start) does not wait: an instance blocked here would not listen, so /healthz would refuse
 * connections and a liveness probe would kill it while another instance's migrations run for hours. It then logs
 * one info line, starts in the pending mode (startSecretCheck: /graphql, /readyz and the secret scanning
 * endpoint answer 503 until the migrations are applied) and tries the lock again in the background every
 * MIGRATIONS_LOCK_RETRY_MS while migrations are pending; once it gets it, it applies what is still pending
 * (another build's instance may have applied only its own, older migrations), gives it back and runs the
 * secret check, which ends the pending mode. A failed background attempt logs one warn line and is tried again.
 * Throws what the migrations or the database threw at start, and SecretMismatchError (see checkSecret).
 */
export async function startMigrations(params: {
  dataSource: DataSource;
  keyCrypto: KeyCrypto;
  logger: Logger;
  migrate: boolean;
  waitForLock: boolean;
  onLockWait?: (holder: MigrationsLockHolder | null) => void;
  /** See openDatabase. */
  warnPending?: boolean;
}): Promise<StartedMigrations> {
  const { dataSource, logger } = params;
  let lockTaken = false;
  let migrations: Migration[] | null = null;
  if (params.migrate && params.waitForLock)
    migrations = await runMigrationsLocked(dataSource, logger, params.onLockWait);
  else if (params.migrate) lockTaken = (migrations = await tryMigrations(dataSource, logger)) === null;
  const applied = migrations?.map((migration) => migration.name) ?? null;
  const secretCheck = await startSecretCheck({ ...params, migratingElsewhere: lockTaken });
  if (secretCheck.checked || !lockTaken) return { secretCheck, applied, stop: () => Promise.resolve() };
  const background = new BackgroundMigrations(dataSource, logger, secretCheck);
  return { secretCheck, applied, stop: () => background.stop() };
}

/**
 * The background half of startMigrations: every MIGRATIONS_LOCK_RETRY_MS, one tryMigrations; ends once it
 * applied them, once nothing is pending any more (another instance applied them all), or on `stop`.
 */
class BackgroundMigrations {
  private readonly stopping = new AbortController();
  private readonly done: Promise<void>;
  private readonly waitingSince = Date.now();

  constructor(
    private readonly dataSource: DataSource,
    private readonly logger: Logger,
    private readonly secretCheck: SecretCheck,
  ) {
    this.done = this.run();
  }

  stop(): Promise<void> {
    this.stopping.abort();
    return this.done;
  }

  private async run(): Promise<void> {
    const { dataSource, logger } = this;
    for (;;) {
      try {
        await delay(MIGRATIONS_LOCK_RETRY_MS, undefined, { signal: this.stopping.signal });
      } catch {
        return; // stopped
      }
      try {
        // Applied by another instance, or here: either way the pending mode ends with the secret check now, not
        // at the next request (it logs a refusal itself, and main.ts stops on it).
        if (!(await migrationsPending(dataSource)) || (await tryMigrations(dataSource, logger, this.waitingSince))) {
          await this.secretCheck.ensure().catch(() => undefined);
          return;
        }
      } catch (error) {
        logger.warn({ err: error }, 'could not apply the database migrations in the background; trying again');
      }
    }
  }
}

/**
 * Applies this build's pending migrations, each in its own transaction, and returns those applied, in order.
 * Instances that all set MIGRATE_ON_START (or start beside `npm run migrate`) would otherwise all find the same
 * migrations pending and apply them at once: TypeORM creates its migrations table check-then-create, so one
 * stopped at start ("duplicate key", "already exists"), and a data migration could run twice. So one at a time per
 * database: the run holds MIGRATIONS_LOCK on one connection of the pool, which also runs the migrations; a run
 * that finds it taken logs one info line, tells `onLockWait` who holds it (migrationsLockHolder; the CLI prints
 * it), tries again every MIGRATIONS_LOCK_RETRY_MS (each try on a connection of the pool, given back at once) for
 * as long as it takes (the other's migrations may run for hours), and then applies what is still pending. It
 * never waits inside the database: a waiting statement holds a snapshot, which a concurrent index build of the
 * other run would wait for. A server start does not wait here at all (startMigrations).
 *
 * That connection runs with no statement_timeout (issue 17) and no idle_in_transaction_session_timeout (a
 * migration's own code between its statements is not an instance hung mid-act), named
 * MIGRATIONS_APPLICATION_NAME and with MIGRATIONS_CONNECTION_CHECK_INTERVAL on PostgreSQL 14+: DB_STATEMENT_TIMEOUT_MS bounds the service's
 * requests, but on a large database an index build or a backfill of users runs for minutes, and a migration cut
 * off by it could never be applied. Its lock_timeout is the database's (none unless the operator set one, which
 * then bounds how long a migration's DDL may queue in front of the running instances' statements). The lock and
 * the connection are always given back, with every setting reset (resetOrClose), also when a migration fails (a
 * connection that could not be reset is closed, which frees the lock). Throws what the migration or the
 * database threw.
 */
export async function runMigrationsLocked(
  dataSource: DataSource,
  logger: Logger,
  onLockWait?: (holder: MigrationsLockHolder | null) => void,
): Promise<Migration[]> {
  let applied = await tryMigrations(dataSource, logger);
  if (applied) return applied;
  logger.info("waits for another instance's migrations to finish (it holds the migrations lock)");
  const waitingSince = Date.now();
  onLockWait?.(await migrationsLockHolder(dataSource).catch(() => null));
  // Tries again rather than waiting in pg_advisory_lock: a statement that waits holds a snapshot, and the
  // other's CREATE INDEX CONCURRENTLY (ScaleIndexes) waits for every older snapshot: a deadlock.
  do await delay(MIGRATIONS_LOCK_RETRY_MS);
  while (!(applied = await tryMigrations(dataSource, logger, waitingSince)));
  return applied;
}

/** The session that holds MIGRATIONS_LOCK, as pg_locks and pg_stat_activity show it. */
export interface MigrationsLockHolder {
  /** Its backend's process id (pg_terminate_backend ends it). */
  pid: number;
  /** Its application_name; null when pg_stat_activity does not show it to this role. */
  applicationName: string | null;
}

/**
 * Who holds MIGRATIONS_LOCK in this database, or null when nobody does (or pg_locks hides it). pg_locks shows a
 * bigint advisory key as classid (its high 32 bits) and objid (its low 32 bits), objsubid 1. Throws what the
 * database threw.
 */
export async function migrationsLockHolder(dataSource: DataSource): Promise<MigrationsLockHolder | null> {
  const [row] = await dataSource.query(
    `SELECT l.pid, a.application_name
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid`,
    [MIGRATIONS_LOCK],
  );
  return row ? { pid: row.pid as number, applicationName: (row.application_name as string | null) ?? null } : null;
}

/**
 * One attempt of runMigrationsLocked on a connection of the pool: null (and the connection given back) when
 * another session holds MIGRATIONS_LOCK, else the migrations it applied under it. Logs at info how long it
 * waited for the lock (when `waitingSince`, a Date.now(), says since when it has been waiting), the names of the
 * pending migrations before it applies them, and each one applied.
 */
async function tryMigrations(
  dataSource: DataSource,
  logger: Logger,
  waitingSince?: number,
): Promise<Migration[] | null> {
  const queryRunner = dataSource.createQueryRunner();
  let locked = false;
  try {
    const [row] = await queryRunner.query(`SELECT pg_try_advisory_lock($1) AS locked`, [MIGRATIONS_LOCK]);
    locked = row.locked as boolean;
  } finally {
    // Nothing was changed on the connection unless it got the lock.
    if (!locked) await queryRunner.release();
  }
  if (!locked) return null;
  try {
    // Session level, for the whole run (migrations that build indexes run outside a transaction); undone by
    // resetOrClose. client_connection_check_interval exists from PostgreSQL 14 (the service also runs on 13):
    // a CASE branch not taken is not evaluated.
    await queryRunner.query(
      `SELECT set_config('statement_timeout', '0', false), set_config('idle_in_transaction_session_timeout', '0', false),
              set_config('application_name', $1, false),
              CASE WHEN current_setting('server_version_num')::int >= 140000
                   THEN set_config('client_connection_check_interval', $2, false) END`,
      [MIGRATIONS_APPLICATION_NAME, MIGRATIONS_CONNECTION_CHECK_INTERVAL],
    );
    if (waitingSince !== undefined) {
      logger.info(
        { waitedMs: Date.now() - waitingSince },
        'got the migrations lock after waiting for another instance',
      );
    }
    const executor = new MigrationExecutor(dataSource, queryRunner);
    executor.transaction = 'each';
    const pending = await executor.getPendingMigrations();
    if (pending.length > 0) {
      logger.info({ migrations: pending.map((migration) => migration.name) }, 'applying database migrations');
    }
    const applied = await executor.executePendingMigrations();
    for (const migration of applied) logger.info({ migration: migration.name }, 'applied migration');
    return applied;
  } finally {
    await resetOrClose(queryRunner);
    await queryRunner.release();
  }
}

/**
 * Ends the runner's open transaction, gives MIGRATIONS_LOCK back and puts every setting back to the value the
 * connection started with (RESET ALL: the run's statement_timeout, idle_in_transaction_session_timeout,
 * application_name and client_connection_check_interval, and any session-level SET of a migration; the pool's
 * DB_STATEMENT_TIMEOUT_MS, DB_IDLE_IN_TRANSACTION_TIMEOUT_MS and application_name are startup parameters, so they
 * come back), so that the pool gets the connection as it lent it; when any of it fails, closes the connection instead (PostgreSQL then frees the lock, and the pool
 * drops a closed connection on release).
 */
async function resetOrClose(queryRunner: QueryRunner): Promise<void> {
  try {
    if (queryRunner.isTransactionActive) await queryRunner.rollbackTransaction();
    await queryRunner.query(`SELECT pg_advisory_unlock($1)`, [MIGRATIONS_LOCK]);
    // Every setting, not only this run's: a migration's own session-level SET would otherwise stay on the pool.
    await queryRunner.query(`RESET ALL`);
  } catch {
    const connection = (queryRunner as unknown as { databaseConnection?: { end(): Promise<void> } }).databaseConnection;
    await connection?.end().catch(() => undefined);
  }
}

export class SecretMismatchError extends Error {}

/** A command that uses keys was started with migrations pending: ACCESS_KEY_SECRET is not checked yet (SecretCheck). */
export class MigrationsPendingError extends Error {}

/**
 * The first start records the secret's fingerprint; later starts are refused unless the keyring holds the
 * recorded secret (current or older). `rotate-secret` moves the record to the current secret once every key
 * is under it; only then may the older secrets leave the keyring.
 *
 * Also refused: a keyring that lacks a secret some key is stored under (each row records its secret's
 * fingerprint). That happens when the old secret is put back alone after `rotate-secret` moved some keys, or
 * when an instance listed the old secret first after a rotation and issued keys under it, and the old secret
 * is then removed: those keys could be neither read nor matched. One scan of access_keys that stops at the
 * first such row. Throws SecretMismatchError (the operator's one line says what to fix).
 */
export async function checkSecret(dataSource: DataSource, keyCrypto: KeyCrypto): Promise<void> {
  await dataSource.query(`INSERT INTO key_secret_fingerprint (fingerprint) VALUES ($1) ON CONFLICT (id) DO NOTHING`, [
    keyCrypto.fingerprint,
  ]);
  const stored = await dataSource.getRepository(KeySecretFingerprint).findOneByOrFail({ id: true });
  if (!keyCrypto.matchesFingerprint(stored.fingerprint)) {
    throw new SecretMismatchError(
      'ACCESS_KEY_SECRET does not match the secret this database was set up with or, after ' +
        '`npm run cli -- rotate-secret`, the one it moved the keys to, so the stored access keys could not be ' +
        'read. Start with that secret (or, while rotating, a list that includes it).',
    );
  }
  const keyring = [keyCrypto, ...keyCrypto.older].map((crypto) => crypto.fingerprint);
  const [{ n: unreadable }] = await dataSource.query(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM access_keys WHERE secret_fingerprint <> ALL($1::bytea[]) LIMIT 1) AS k`,
    [keyring],
  );
  if (unreadable > 0) {
    throw new SecretMismatchError(
      'ACCESS_KEY_SECRET lacks a secret that access keys are stored under (a rotation is under way or was ' +
        'undone), so those keys could not be read. Put every secret of the rotation back in the list, the new ' +
        'one first, and run `npm run cli -- rotate-secret` before removing any.',
    );
  }
}

/**
 * DESIGN: "startup refuses a secret that doesn't match the database". With no migration pending, checks the
 * secret now (throws SecretMismatchError, as checkSecret) and returns a SecretCheck that is done. With
 * migrations pending there is nothing to check against yet: warns and returns one that checks once they are
 * applied (see SecretCheck).
 */
export async function startSecretCheck(
  deps: SecretCheckDeps & {
    /** This start found MIGRATIONS_LOCK taken and applies them once it is free (startMigrations): said at info. */
    migratingElsewhere?: boolean;
    /** False: pending migrations are the caller's to report (the CLI refuses with its own line). */
    warnPending?: boolean;
  },
): Promise<SecretCheck> {
  const pending = await migrationsPending(deps.dataSource);
  if (!pending) await checkSecret(deps.dataSource, deps.keyCrypto);
  else if (deps.migratingElsewhere) {
    deps.logger.info(
      'another instance is applying the database migrations (it holds the migrations lock); this one answers 503 ' +
        'until they are applied, and applies any still pending once the lock is free',
    );
  } else if (deps.warnPending !== false) {
    deps.logger.warn('database migrations are pending: run `npm run migrate` (/readyz answers 503 until then)');
  }
  return new SecretCheck(deps, !pending);
}

/**
 * True while a migration of this build is not applied yet: DataSource.showMigrations, with its connection
 * always given back. TypeORM's own releases it only when both of its queries succeed, so each call that met a
 * lost connection (a failover, a restart) kept one of the pool's for good; called per request while the secret
 * is unchecked (SecretCheck) and per /readyz probe, a few such calls would empty the pool. Read-only: without
 * TypeORM's migrations table every migration is pending, and the table is left for the run that holds
 * MIGRATIONS_LOCK to create (showMigrations creates it, check-then-create, and a waiting instance that did so
 * while the holder did the same made one of them stop at start). Throws what the database threw.
 */
export async function migrationsPending(dataSource: DataSource): Promise<boolean> {
  const queryRunner = dataSource.createQueryRunner();
  try {
    const table = dataSource.options.migrationsTableName ?? 'migrations';
    const [{ exists }] = await queryRunner.query(`SELECT to_regclass($1) IS NOT NULL AS exists`, [table]);
    if (!exists) return true;
    return await new MigrationExecutor(dataSource, queryRunner).showMigrations();
  } finally {
    await queryRunner.release();
  }
}

interface SecretCheckDeps {
  dataSource: DataSource;
  keyCrypto: KeyCrypto;
  logger: Logger;
}

/**
 * The secret check of an instance started before `npm run migrate`: checkSecret runs once, as soon as no
 * migration is pending, before anything that uses keys is served (DESIGN: "startup refuses a secret that
 * doesn't match the database"; an instance that served with another secret would fail every stored key and
 * issue keys nobody else can read). The routes that use keys read `checked` (one property per request) and,
 * while it is false, call `ensure` instead of serving.
 */
export class SecretCheck {
  /** Resolves with the refusal once checkSecret refused this keyring (after its one error line); never rejects. */
  readonly refused: Promise<SecretMismatchError>;
  private refusal: SecretMismatchError | null = null;
  private running: Promise<boolean> | null = null;
  private announceRefusal!: (error: SecretMismatchError) => void;

  constructor(
    private readonly deps: SecretCheckDeps,
    /** True once checkSecret accepted the keyring; never false again. */
    public checked: boolean,
  ) {
    this.refused = new Promise((resolve) => (this.announceRefusal = resolve));
  }

  /**
   * Resolves true once the secret is checked (at once when it was), false while migrations are still pending.
   * One check at a time: callers meanwhile share it. Rejects with SecretMismatchError when checkSecret refused
   * the keyring, then and on every later call (logged once, at error level: the operator's to fix, as a
   * refusal at start); with what the database threw when it could not answer (the next call tries again).
   */
  ensure(): Promise<boolean> {
    if (this.checked) return Promise.resolve(true);
    if (this.refusal) return Promise.reject(this.refusal);
    return (this.running ??= this.check().finally(() => (this.running = null)));
  }

  private async check(): Promise<boolean> {
    const { dataSource, keyCrypto, logger } = this.deps;
    if (await migrationsPending(dataSource)) return false;
    try {
      await checkSecret(dataSource, keyCrypto);
    } catch (error) {
      if (error instanceof SecretMismatchError) {
        this.refusal = error;
        logger.error(`the database was migrated and set up under another secret; stopping: ${error.message}`);
        this.announceRefusal(error);
      }
      throw error;
    }
    this.checked = true;
    return true;
  }
}
