import { randomBytes, randomUUID } from 'node:crypto';

import type { FastifyInstance } from 'fastify';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';

import type { Clock } from '../../src/access-keys/clock';
import { KeyCrypto } from '../../src/access-keys/key-crypto';
import { AUDIT_EVENT_ID_PURPOSE } from '../../src/audit/audit.service';
import type { PauseHooks } from '../../src/authorization/authority';
import { type Config, loadConfig } from '../../src/config';
import { createDataSource } from '../../src/db/data-source';
import { QueryCounter } from '../../src/db/query-counter';
import { startMigrations, startSecretCheck } from '../../src/db/runtime';
import { OpaqueIds } from '../../src/graphql/opaque-ids';
import { createLogger } from '../../src/logger';
import { type AppOptions, buildApp } from '../../src/server/app';
import { createServices, type Services } from '../../src/server/services';
import { TEST_DB_DEFAULTS, withDatabase } from './database-url';

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  headers: Headers;
  body: { data?: T | null; errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, any> }> };
}

export interface RequestOptions {
  variables?: Record<string, unknown>;
  /** Sent as X-Access-Key. */
  key?: string;
  headers?: Record<string, string>;
}

export interface TestApp {
  readonly url: string;
  readonly databaseUrl: string;
  readonly dataSource: DataSource;
  readonly services: Services;
  readonly queries: QueryCounter;
  readonly keyCrypto: KeyCrypto;
  readonly app: FastifyInstance;
  /** Every log line, when the app was started with captureLogs. */
  readonly logs: string[];
  gql<T = Record<string, any>>(query: string, options?: RequestOptions): Promise<GraphQLResponse<T>>;
  close(): Promise<void>;
}

async function admin<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh database cloned from the migrated template, for one test file. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `crm_access_test_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  await admin((client) => client.query(`CREATE DATABASE ${name} TEMPLATE ${process.env.CRM_TEST_TEMPLATE}`));
  return {
    url: withDatabase(process.env.CRM_TEST_SERVER_URL!, name),
    drop: () => admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** The suite's database settings, except those a test sets in its env (DB_STATEMENT_TIMEOUT_MS, ...). */
function testDbSettings(config: Config, env: NodeJS.ProcessEnv = {}): Config['db'] {
  return {
    poolSize: env.DB_POOL_SIZE ? config.db.poolSize : TEST_DB_DEFAULTS.poolSize,
    statementTimeoutMs: env.DB_STATEMENT_TIMEOUT_MS
      ? config.db.statementTimeoutMs
      : TEST_DB_DEFAULTS.statementTimeoutMs,
    idleInTransactionTimeoutMs: env.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS
      ? config.db.idleInTransactionTimeoutMs
      : TEST_DB_DEFAULTS.idleInTransactionTimeoutMs,
    connectTimeoutMs: env.DB_CONNECT_TIMEOUT_MS ? config.db.connectTimeoutMs : TEST_DB_DEFAULTS.connectTimeoutMs,
  };
}

export interface TestAppOptions {
  env?: NodeJS.ProcessEnv;
  /** Run another instance on an existing test database (scale-out tests). */
  database?: { url: string; secret: Buffer; olderSecrets?: Buffer[] };
  /** What key expiry is decided by (a TestClock moves time); the system clock by default. */
  clock?: Clock;
  /** Keep every log line (at the configured LOG_LEVEL) in `logs`. */
  captureLogs?: boolean;
  /** Extra Apollo plugins, to observe execution. */
  plugins?: AppOptions['plugins'];
  /** Test-only pauses inside the app (see PauseHooks); the test may set and unset them as it goes. */
  hooks?: PauseHooks;
  /** Where the app's LISTEN connection goes, given the database URL (a test puts a proxy in between). */
  listenerDatabaseUrl?: (databaseUrl: string) => string;
  /**
   * Check the secret against the database as a process start does (openDatabase): at once when no migration
   * is pending, else once they are. Off by default: most tests share databases among secrets on purpose.
   */
  secretCheckAtStart?: boolean;
  /**
   * Apply the migrations as a server process start with MIGRATE_ON_START does (startMigrations, not waiting
   * for MIGRATIONS_LOCK: another holder's run is waited for in the background); implies secretCheckAtStart.
   * `close` stops that background run first.
   */
  migrateAtStart?: boolean;
}

/** The real HTTP app on a real PostgreSQL database, listening on a free loopback port. */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const database = options.database
    ? { url: options.database.url, drop: async () => undefined }
    : await createTestDatabase();
  const secret = options.database?.secret ?? randomBytes(32);
  // Shedding on event-loop lag is a wall-clock threshold, which a busy test machine would trip at random:
  // off unless a test asks for it (test/hardening/http-limits.test.ts does).
  const config: Config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    MAX_EVENT_LOOP_DELAY_MS: '0',
    ...options.env,
  });
  const logs: string[] = [];
  const destination = options.captureLogs ? { write: (line: string) => void logs.push(line) } : undefined;
  const logger = createLogger({ level: config.logLevel, destination });
  const queries = new QueryCounter();
  const dataSource = createDataSource({
    url: database.url,
    db: testDbSettings(config, options.env),
    queryCounter: queries,
    logger,
  });
  await dataSource.initialize();
  const keyCrypto = new KeyCrypto(secret, options.database?.olderSecrets);
  const started = options.migrateAtStart
    ? await startMigrations({ dataSource, keyCrypto, logger, migrate: true, waitForLock: false })
    : null;
  const secretCheck =
    started?.secretCheck ??
    (options.secretCheckAtStart ? await startSecretCheck({ dataSource, keyCrypto, logger }) : undefined);
  const services = createServices({
    dataSource,
    databaseUrl: database.url,
    listenerDatabaseUrl: options.listenerDatabaseUrl?.(database.url),
    hooks: options.hooks,
    clock: options.clock,
    keyCrypto,
    logger,
    config,
  });
  await services.start();
  const app = await buildApp({ config, services, logger, plugins: options.plugins, secretCheck }).catch(
    async (error: unknown) => {
      await started?.stop();
      await services.stop();
      await dataSource.destroy();
      await database.drop();
      throw error;
    },
  );
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `${address}/graphql`;

  return {
    url,
    databaseUrl: database.url,
    dataSource,
    services,
    queries,
    keyCrypto,
    app,
    logs,
    async gql(query, { variables, key, headers } = {}) {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(key === undefined ? {} : { 'x-access-key': key }),
          ...headers,
        },
        body: JSON.stringify({ query, variables }),
      });
      return { status: response.status, headers: response.headers, body: (await response.json()) as any };
    },
    async close() {
      await app.close();
      await started?.stop();
      await services.stop();
      await dataSource.destroy();
      await database.drop();
    },
  };
}

/** A test app with a connection of the test's own to the app's database; `close` ends both. */
export interface AppWithSecondConnection {
  readonly app: TestApp;
  /** Holds locks and transactions the app's statements meet, or changes rows behind the app's back. */
  readonly other: Client;
  close(): Promise<void>;
}

/** startTestApp, then a second connection to its database (see AppWithSecondConnection). */
export async function startAppWithSecondConnection(options: TestAppOptions = {}): Promise<AppWithSecondConnection> {
  const app = await startTestApp(options);
  const other = new Client({ connectionString: app.databaseUrl });
  await other.connect().catch(async (error: unknown) => {
    await app.close();
    throw error;
  });
  return {
    app,
    other,
    async close() {
      await other.end();
      await app.close();
    },
  };
}

/**
 * The audit_events row ids (bigint as text) behind `auditEvents` ids or cursors shown to `organizationId`, null
 * for a token that is not one of that organization's: what a test checks rows by, as the API shows no number.
 */
export function auditRowIds(
  app: Pick<TestApp, 'keyCrypto'>,
  tokens: readonly string[],
  organizationId: string,
): (string | null)[] {
  const ids = new OpaqueIds(app.keyCrypto.opaqueIdKeys()).forScope({ purpose: AUDIT_EVENT_ID_PURPOSE, organizationId });
  return tokens.map((token) => ids.decode(token));
}

/**
 * The id of the newest audit event (as text; '0' when there is none): tests read the events written after it
 * (`WHERE id > $1`).
 */
export async function lastAuditEventId(app: Pick<TestApp, 'dataSource'>): Promise<string> {
  const [{ id }] = await app.dataSource.query(`SELECT coalesce(max(id), 0)::text AS id FROM audit_events`);
  return id;
}
