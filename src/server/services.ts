import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';

import { AccessKeyService } from '../access-keys/access-key.service';
import { AccessKeyRegeneration } from '../access-keys/access-key-regeneration';
import { type Clock, systemClock } from '../access-keys/clock';
import type { KeyCrypto } from '../access-keys/key-crypto';
import { AccessKeyPolicyService } from '../access-keys/key-policy.service';
import { LeakReportService } from '../access-keys/leak-report.service';
import { AuditService } from '../audit/audit.service';
import { AUTH_CHANGES_CHANNEL, AuthCache } from '../authentication/auth-cache';
import { Authenticator } from '../authentication/authenticate';
import { PasswordHasher } from '../authentication/password';
import { Authority, type PauseHooks } from '../authorization/authority';
import type { Config } from '../config';
import { Notifications } from '../db/notifications';
import { DatabaseOutage } from '../db/outage';
import { OpaqueIds } from '../graphql/opaque-ids';
import { Metrics } from '../metrics';
import { OrganizationService } from '../organizations/organization.service';
import { AuthRateLimiter } from '../rate-limiting/rate-limit';
import { SessionService } from '../sessions/session.service';
import { UserService } from '../users/user.service';

export interface Services {
  readonly dataSource: DataSource;
  readonly notifications: Notifications;
  readonly rateLimiter: AuthRateLimiter;
  readonly authCache: AuthCache;
  readonly authority: Authority;
  readonly passwords: PasswordHasher;
  readonly audit: AuditService;
  readonly accessKeys: AccessKeyService;
  /** Regenerating a key: a change of its user, in access-keys/. */
  readonly accessKeyRegeneration: AccessKeyRegeneration;
  /** Leaked keys revoked on report (GitHub secret scanning, reportLeakedAccessKey). */
  readonly leakReports: LeakReportService;
  readonly sessions: SessionService;
  readonly users: UserService;
  readonly organizations: OrganizationService;
  /** Organizations' key expiry policy (maxKeyAgeDays). */
  readonly keyPolicy: AccessKeyPolicyService;
  readonly authenticator: Authenticator;
  /** Logs a database outage once when it starts and once when it ends, however many requests fail meanwhile. */
  readonly outage: DatabaseOutage;
  /** This instance's counters; served only where METRICS_PORT is set. */
  readonly metrics: Metrics;
  /** Starts listening for other instances' changes. */
  start(): Promise<void>;
  /** Writes what is pending and stops listening; the data source is closed by its owner. */
  stop(): Promise<void>;
}

export interface ServiceDeps {
  dataSource: DataSource;
  databaseUrl: string;
  /** Where the LISTEN connection goes; the database URL unless a test puts a proxy in between. */
  listenerDatabaseUrl?: string;
  /** Test-only pauses (see PauseHooks); never set in production. */
  hooks?: PauseHooks;
  keyCrypto: KeyCrypto;
  logger: Logger;
  config: Config;
  /** What key expiry is decided by; the system clock unless a test moves time (see Clock). */
  clock?: Clock;
  /**
   * The instance's counters, when its entry point made them before the database was opened (src/main.ts counts
   * unhandled rejections from then on); new ones otherwise.
   */
  metrics?: Metrics;
}

/** Wires the services once per process; the same wiring serves the HTTP app, the CLI and the tests. */
export function createServices(deps: ServiceDeps): Services {
  const { dataSource, keyCrypto, logger, config } = deps;
  const clock = deps.clock ?? systemClock;
  const hooks = deps.hooks ?? {};
  const notifications = new Notifications({
    url: deps.listenerDatabaseUrl ?? deps.databaseUrl,
    logger,
    connectTimeoutMs: config.db.connectTimeoutMs,
  });
  const rateLimiter = new AuthRateLimiter({ dataSource, notifications, logger, settings: config.authRateLimit });
  const authCache = new AuthCache(config.authCache);
  notifications.on(AUTH_CHANGES_CHANNEL, (payload) => authCache.applyNotification(payload));
  notifications.onConnect(() => authCache.enable());
  notifications.onDisconnect(() => authCache.disable());
  notifications.onHeartbeat((sentAtMs) => authCache.confirmFresh(sentAtMs));
  const authority = new Authority({ authCache, hooks, clock });
  const passwords = new PasswordHasher(config.passwordWork, hooks);
  const audit = new AuditService({ dataSource, authority, ids: new OpaqueIds(keyCrypto.opaqueIdKeys()) });
  const accessKeys = new AccessKeyService({ dataSource, keyCrypto, logger, clock });
  const sessions = new SessionService({
    dataSource,
    keyCrypto,
    audit,
    rateLimiter,
    authCache,
    authority,
    passwords,
    hooks,
    sessionTtlSeconds: config.sessionTtlSeconds,
  });
  const users = new UserService({ dataSource, accessKeys, audit, sessions, authCache, authority, passwords, clock });
  const accessKeyRegeneration = new AccessKeyRegeneration({ users, accessKeys, audit });
  const keyPolicy = new AccessKeyPolicyService({ dataSource, audit, authCache, authority, clock });
  const organizations = new OrganizationService({ dataSource, users });
  const leakReports = new LeakReportService({
    dataSource,
    accessKeys,
    audit,
    authority,
    authCache,
    keyCrypto,
    sessions,
    clock,
  });
  const authenticator = new Authenticator({ accessKeys, sessions, rateLimiter, keyCrypto, cache: authCache, clock });
  const outage = new DatabaseOutage({ logger, probe: () => dataSource.query('SELECT 1') });
  const metrics = deps.metrics ?? new Metrics();
  metrics.watch({ authCache, listenerConnected: () => notifications.isListening, pool: () => poolStats(dataSource) });
  return {
    dataSource,
    notifications,
    rateLimiter,
    authCache,
    authority,
    passwords,
    audit,
    accessKeys,
    accessKeyRegeneration,
    leakReports,
    sessions,
    users,
    organizations,
    keyPolicy,
    authenticator,
    outage,
    metrics,
    start: () => notifications.start(),
    async stop() {
      outage.stop();
      await rateLimiter.flush();
      await accessKeys.flushUse();
      await notifications.stop();
    },
  };
}

/** pg's pool behind TypeORM's PostgreSQL driver (`master`), or null before it is connected. */
function poolStats(dataSource: DataSource): { total: number; idle: number; waiting: number } | null {
  const pool = (dataSource.driver as { master?: { totalCount: number; idleCount: number; waitingCount: number } })
    .master;
  return pool ? { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount } : null;
}
