import type { Logger } from 'pino';
import { DataSource, type QueryRunner, type ReplicationMode } from 'typeorm';

import { Initial1764100000000 } from '../../migrations/1764100000000-Initial';
import { SessionsAuditRateLimits1764200000000 } from '../../migrations/1764200000000-SessionsAuditRateLimits';
import { AuthChangeNotifications1764300000000 } from '../../migrations/1764300000000-AuthChangeNotifications';
import { AuthTruncateNotifications1764400000000 } from '../../migrations/1764400000000-AuthTruncateNotifications';
import { NormalizeEmails1764513000000 } from '../../migrations/1764513000000-NormalizeEmails';
import { LeakReportsAndHandOver1764620000000 } from '../../migrations/1764620000000-LeakReportsAndHandOver';
import { KeyExpiryAndSecretRotation1764630000000 } from '../../migrations/1764630000000-KeyExpiryAndSecretRotation';
import { ScaleIndexes1764700000000 } from '../../migrations/1764700000000-ScaleIndexes';
import { UserCounts1764700100000 } from '../../migrations/1764700100000-UserCounts';
import { OrganizationActiveKey1764800000000 } from '../../migrations/1764800000000-OrganizationActiveKey';
import { EmailFinalSigmaAndIdn1764800000100 } from '../../migrations/1764800000100-EmailFinalSigmaAndIdn';
import { EmailDecodedLabelsFolded1764800000200 } from '../../migrations/1764800000200-EmailDecodedLabelsFolded';
import { EmailDomainsMappedByUts461764800000300 } from '../../migrations/1764800000300-EmailDomainsMappedByUts46';
import { PreviousKeyCreatedAt1764800000400 } from '../../migrations/1764800000400-PreviousKeyCreatedAt';
import { PreviousKeyOwnExpiry1764800000500 } from '../../migrations/1764800000500-PreviousKeyOwnExpiry';
import { PasswordChangeEndsSessions1764800000600 } from '../../migrations/1764800000600-PasswordChangeEndsSessions';
import { AnnounceEveryLookupColumn1764800000700 } from '../../migrations/1764800000700-AnnounceEveryLookupColumn';
import { AccessKey } from '../access-keys/access-key.entity';
import { AuditEvent } from '../audit/audit-event.entity';
import type { Config } from '../config';
import { Organization } from '../organizations/organization.entity';
import { User } from '../users/user.entity';
import { KeySecretFingerprint } from './key-secret-fingerprint.entity';
import { listeningClientClass } from './pg-client';
import { QueryCounter } from './query-counter';

export const ENTITIES = [Organization, User, AccessKey, AuditEvent, KeySecretFingerprint];
export const MIGRATIONS = [
  Initial1764100000000,
  SessionsAuditRateLimits1764200000000,
  AuthChangeNotifications1764300000000,
  AuthTruncateNotifications1764400000000,
  NormalizeEmails1764513000000,
  LeakReportsAndHandOver1764620000000,
  KeyExpiryAndSecretRotation1764630000000,
  ScaleIndexes1764700000000,
  UserCounts1764700100000,
  OrganizationActiveKey1764800000000,
  EmailFinalSigmaAndIdn1764800000100,
  EmailDecodedLabelsFolded1764800000200,
  EmailDomainsMappedByUts461764800000300,
  PreviousKeyCreatedAt1764800000400,
  PreviousKeyOwnExpiry1764800000500,
  PasswordChangeEndsSessions1764800000600,
  AnnounceEveryLookupColumn1764800000700,
];

export interface DataSourceOptions {
  url: string;
  db: Config['db'];
  queryCounter?: QueryCounter;
  /** Told (warn) of a connection lost while checked out between statements; nothing is logged without one. */
  logger?: Logger;
}

/**
 * TypeORM's query runner gives its connection back to the pool the moment the connection emits 'error' (its
 * own listener, put on at checkout). Between two statements of a transaction, which is when PostgreSQL ending
 * the session emits it, that marks the runner released: the transaction's next statement then throws TypeORM's
 * "query runner already released", which says nothing of the database (500 and an error line of a resolver,
 * not 503). So a lost connection stays with its runner until the runner is done: the next statement fails as
 * pg reports it ("Client has encountered a connection error", a database that cannot serve the request), and
 * the pool discards the connection when the runner releases it (pg-pool drops a client that is not queryable).
 * pg's error for that statement no longer says why the connection ended; a connection ended for idling in a
 * transaction past DB_IDLE_IN_TRANSACTION_TIMEOUT_MS is told by the connection itself (createDataSource).
 */
class ServiceDataSource extends DataSource {
  override createQueryRunner(mode?: ReplicationMode): QueryRunner {
    const runner = super.createQueryRunner(mode);
    const releasing = runner as unknown as { releasePostgresConnection(error?: Error): Promise<void> };
    const release = releasing.releasePostgresConnection.bind(runner);
    releasing.releasePostgresConnection = (error) => (error ? Promise.resolve() : release());
    return runner;
  }
}

/** SQLSTATE of a session PostgreSQL ended for idling in a transaction past idle_in_transaction_session_timeout. */
const IDLE_IN_TRANSACTION_SESSION_TIMEOUT = '25P03';

function endedIdleInTransaction(error: Error): boolean {
  return (error as { code?: unknown }).code === IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
}

/**
 * The warning of a connection PostgreSQL ended for idling in a transaction past DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
 * once per connection, whichever way pg then reports it: as the connection's 'error' between statements (the next
 * statement is refused as "not queryable"), or as the error of the statement sent just then, when the instance
 * resumed from a pause of its event loop and sent it before reading the end of the session.
 */
function warnOfIdleInTransaction(logger: Logger | undefined, error: Error): void {
  if (!endedIdleInTransaction(error)) return;
  logger?.warn(
    { err: error },
    'PostgreSQL ended a connection that sat idle in a transaction past DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: this instance stalled in the middle of a request, which is rolled back and answered 503',
  );
}

/** A warning of another connection lost while checked out between statements (that one is told above). */
function warnOfLostConnection(logger: Logger | undefined, error: Error): void {
  if (endedIdleInTransaction(error)) return;
  logger?.warn({ err: error }, 'lost a database connection in use between statements; it is discarded');
}

/**
 * The TypeORM data source of the service (not yet initialized): the entities and migrations, never
 * `synchronize`; pool size, connect timeout (ms), statement timeout and idle-in-transaction bound (ms, 0: none)
 * from `db`; every statement counted by `queryCounter` (a fresh one when not given). The pool's connections are ListeningClients
 * (src/db/pg-client.ts): one that PostgreSQL ends while checked out between statements does not end the process,
 * and its holder's next statement fails as a lost connection (see ServiceDataSource).
 */
export function createDataSource({ url, db, queryCounter, logger }: DataSourceOptions): DataSource {
  return new ServiceDataSource({
    type: 'postgres',
    url,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTransactionMode: 'each',
    synchronize: false,
    logger: queryCounter ?? new QueryCounter(),
    poolSize: db.poolSize,
    connectTimeoutMS: db.connectTimeoutMs,
    applicationName: 'crm-access',
    extra: {
      statement_timeout: db.statementTimeoutMs || undefined,
      // A startup parameter like statement_timeout: the pool's every connection has it, and RESET ALL keeps it.
      idle_in_transaction_session_timeout: db.idleInTransactionTimeoutMs || undefined,
      // An expected event when PostgreSQL restarts (a warning): what ran on the connection fails and is
      // reported on its own; the pool opens a new connection when asked for one.
      Client: listeningClientClass(
        (error) => warnOfLostConnection(logger, error),
        (error) => warnOfIdleInTransaction(logger, error),
      ),
    },
  });
}
