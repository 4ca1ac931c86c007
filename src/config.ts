import fs from 'node:fs';
import path from 'node:path';

import proxyAddr from '@fastify/proxy-addr';

import { DEFAULT_QUERY_LIMITS, type QueryLimits } from './graphql/query-limits';

export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly host: string;
  readonly port: number;
  /** Absent: run the embedded PostgreSQL with its data in `dataDir`. */
  readonly databaseUrl: string | null;
  readonly dataDir: string;
  /** Absent outside production: the embedded default generates one into `dataDir`. */
  /** The current master secret (the keyring's first): what new keys are encrypted and digested with. */
  readonly accessKeySecret: Buffer | null;
  /** Older master secrets, newest first: still read and looked up by while `rotate-secret` moves keys off them. */
  readonly olderAccessKeySecrets: readonly Buffer[];
  readonly migrateOnStart: boolean;
  /**
   * Which X-Forwarded-For hops to believe: false (default: clients cannot pick their address), a number of
   * proxies in front of the service (true means 1), or their addresses/CIDRs.
   */
  readonly trustProxy: false | number | string[];
  readonly logLevel: string;
  readonly explorerEnabled: boolean;
  readonly corsOrigins: readonly string[];
  /** Sessions expire this long after sign-in, whatever their use. */
  readonly sessionTtlSeconds: number;
  readonly authRateLimit: {
    /** Failed authentications one client address may make per window before it gets 429. */
    readonly maxFailures: number;
    readonly windowSeconds: number;
  };
  /** Bounds on password hashing (scrypt), per instance. */
  readonly passwordWork: {
    /** Hashes or verifications running at once (each holds about 128 MiB). */
    readonly concurrency: number;
    /** How many more may wait for a turn; beyond that, 503 SERVICE_UNAVAILABLE. */
    readonly queue: number;
    /** Verifications one client address may have running or waiting at once; beyond that, 429 RATE_LIMITED. */
    readonly perClient: number;
  };
  readonly authCache: {
    /** Principals kept per instance; 0 turns the cache off. */
    readonly maxEntries: number;
    /** Oldest a cached principal may be (revocations arrive by NOTIFY well before that). */
    readonly ttlSeconds: number;
  };
  readonly queryLimits: QueryLimits;
  readonly db: {
    readonly poolSize: number;
    readonly statementTimeoutMs: number;
    /**
     * Longest a connection may sit idle inside a transaction (ms; 0: no bound), PostgreSQL's
     * idle_in_transaction_session_timeout: past it PostgreSQL ends the session, which frees the locks of an
     * instance hung in the middle of an act, so a revocation on another instance need not wait for it.
     */
    readonly idleInTransactionTimeoutMs: number;
    readonly connectTimeoutMs: number;
  };
  /** One line per request (method, path without query, status, duration, request id); never headers. */
  readonly logRequests: boolean;
  /** Prometheus metrics on a port of their own; `port` null: not served at all. */
  readonly metrics: { readonly port: number | null; readonly host: string };
  readonly http: {
    /** Longest a client may take to send a whole request (headers and body). */
    readonly requestTimeoutMs: number;
    /** Longest a client may take to send the request headers, from its connection or its previous response. */
    readonly headersTimeoutMs: number;
    /** How long an idle keep-alive connection stays open after a response. */
    readonly keepAliveTimeoutMs: number;
    /** Open connections at most; null: derived from the process's open-file limit. */
    readonly maxConnections: number | null;
  };
  /** Audit events older than this many days are deleted (src/audit/audit-retention.ts); null: kept forever. */
  readonly auditRetentionDays: number | null;
  /**
   * GitHub secret scanning (POST /secret-scanning/github): the file holding GitHub's public keys for it, as
   * its public-keys API answers them; null: the endpoint is off (404).
   */
  readonly secretScanning: { readonly githubKeysFile: string | null };
  /** Requests answer 503 with Retry-After while either limit is exceeded (0 turns that check off). */
  readonly loadShedding: {
    readonly maxEventLoopDelayMs: number;
    /** Null: 90% of V8's heap limit. */
    readonly maxHeapUsedBytes: number | null;
  };
}

export class ConfigError extends Error {}

const MIN_SECRET_BYTES = 32;

/** base64 or base64url, padding only at the end: what `openssl rand -base64 32` prints. */
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * One master secret: base64 (or base64url) of 32+ bytes, trimmed. Node's base64 decoding stops silently at
 * the first padding or foreign character, so "NEW OLD" or "NEW;OLD" would read as NEW alone and drop the old
 * secret from a keyring without a word: anything but the base64 alphabet is refused. Throws ConfigError
 * naming `source`, never the value.
 */
export function parseSecret(value: string, source: string): Buffer {
  const entry = value.trim();
  if (!BASE64.test(entry)) {
    throw new ConfigError(
      `${source} is not base64 (for example: openssl rand -base64 32); list several secrets with commas or line breaks.`,
    );
  }
  const secret = Buffer.from(entry, 'base64');
  if (secret.length < MIN_SECRET_BYTES) {
    throw new ConfigError(
      `${source} must be at least ${MIN_SECRET_BYTES} random bytes, base64-encoded ` +
        '(for example: openssl rand -base64 32).',
    );
  }
  return secret;
}

/**
 * A setting's whole number in plain decimal digits ("8080"; spaces around it are trimmed), else NaN: Number()
 * alone took "0x1F93", "4e3" and "5.0", and read " " as 0 (a blank PORT listened on a random port).
 */
export function wholeNumber(raw: string): number {
  const trimmed = raw.trim();
  return /^\d{1,15}$/.test(trimmed) ? Number(trimmed) : NaN;
}

/** A blank setting (unset, empty or spaces only): takes its default, or for an optional one, none. */
function blank(env: NodeJS.ProcessEnv, name: string): boolean {
  return !env[name]?.trim();
}

/** A whole-number setting within its bounds (wholeNumber); the fallback when blank. Throws ConfigError. */
function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, range: { min: number; max: number }): number {
  const raw = env[name];
  if (raw === undefined || blank(env, name)) return fallback;
  const value = wholeNumber(raw);
  if (!(value >= range.min && value <= range.max)) {
    throw new ConfigError(`${name} must be a whole number from ${range.min} to ${range.max}, got "${raw}".`);
  }
  return value;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds, or a number with s/m/h/d: "43200", "12h", "30m". */
function duration(env: NodeJS.ProcessEnv, name: string, fallbackSeconds: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallbackSeconds;
  const match = /^(\d+)([smhd]?)$/.exec(raw);
  const seconds = match ? Number(match[1]) * DURATION_UNITS[match[2] || 's'] : NaN;
  if (!(seconds >= 60 && seconds <= 30 * 86400)) {
    throw new ConfigError(`${name} must be a duration from 1m to 30d (like 12h or 3600), got "${raw}".`);
  }
  return seconds;
}

/**
 * A setting that may come from the environment or, by the Docker/Kubernetes secrets convention, from the
 * file named in `<name>_FILE` (contents trimmed). Both at once is refused: which one wins would be a guess.
 * Throws ConfigError for both set, an unreadable file or an empty one.
 */
function fromEnvOrFile(env: NodeJS.ProcessEnv, name: string): { value: string; source: string } | null {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct && file) throw new ConfigError(`Set ${name} or ${name}_FILE, not both.`);
  if (!file) return direct ? { value: direct, source: name } : null;
  let value: string;
  try {
    value = fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(
      `${name}_FILE names a file that cannot be read: ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}).`,
    );
  }
  if (!value) throw new ConfigError(`${name}_FILE names an empty file: ${file}.`);
  return { value, source: `${name}_FILE (${file})` };
}

function trustProxy(raw: string | undefined): false | number | string[] {
  const value = raw?.trim().toLowerCase() ?? '';
  if (['', 'false', '0', 'no'].includes(value)) return false;
  // Never "trust everything": the left-most X-Forwarded-For entry is whatever the client wrote.
  if (value === 'true' || value === 'yes') return 1;
  if (/^\d+$/.test(value)) return Number(value);
  const entries = value
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  // Checked here, one entry at a time, so that a typo is one line naming it, not proxy-addr's stack at start.
  for (const entry of entries) {
    try {
      proxyAddr.compile(entry);
    } catch {
      throw new ConfigError(
        `TRUST_PROXY must be true, false, a number of proxies, or comma-separated proxy addresses or CIDRs ` +
          `(or loopback, linklocal, uniquelocal), got "${entry}".`,
      );
    }
  }
  return entries;
}

/**
 * Whether `entry` is an Origin as a browser sends it: scheme://host[:port]. For http(s) that is the URL's own
 * origin; an app's or extension's scheme (capacitor://localhost, chrome-extension://<id>) has an opaque origin
 * in URL ("null") but is sent as scheme://host all the same.
 */
function isOrigin(entry: string): boolean {
  if (!URL.canParse(entry)) return false;
  const url = new URL(entry);
  if (url.origin === entry) return true;
  return url.origin === 'null' && url.host !== '' && entry === `${url.protocol}//${url.host}`;
}

/**
 * CORS_ORIGINS: origins exactly as browsers send them in Origin (scheme://host[:port]), which the CORS plugin
 * compares as strings: a bare host name or a trailing slash would never match, and the browser would refuse
 * every call without a word from the service.
 */
function corsOrigins(raw: string | undefined): string[] {
  const entries = (raw ?? '')
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  for (const entry of entries) {
    if (entry === 'null') {
      throw new ConfigError(
        'CORS_ORIGINS may not hold "null": browsers send it from sandboxed frames and file:// pages, which any ' +
          'site can open; name the origins of your pages.',
      );
    }
    if (isOrigin(entry)) continue;
    throw new ConfigError(
      `CORS_ORIGINS holds origins as browsers send them, like https://crm.example.com (scheme, host and an ` +
        `optional port; no path, no trailing slash), got "${entry}".`,
    );
  }
  return entries;
}

/**
 * DATABASE_URL: a PostgreSQL connection string (postgres:, postgresql:, pg's socket: or a socket directory),
 * one pg and TypeORM can read (readableAsUrl). pg reads the host and port of any scheme, so mysql://... failed
 * as an unreachable PostgreSQL. Throws ConfigError; the refusal names the scheme at most: the URL may hold a
 * password.
 */
function databaseUrl(env: NodeJS.ProcessEnv): string | null {
  const setting = fromEnvOrFile(env, 'DATABASE_URL');
  if (!setting) return null;
  const { value, source } = setting;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value)?.[1].toLowerCase();
  if (value.startsWith('/')) return value;
  if (scheme === 'postgres' || scheme === 'postgresql' || scheme === 'socket') {
    if (!readableAsUrl(value)) {
      throw new ConfigError(
        `${source} cannot be read as a URL: percent-encode the special characters of its user name and password ` +
          '(% as %25, # as %23, @ as %40, / as %2F, : as %3A) and give a port from 1 to 65535.',
      );
    }
    return value;
  }
  throw new ConfigError(
    `${source} must be a PostgreSQL connection string (postgres://user:password@host:5432/database), ` +
      `got ${scheme ? `a ${scheme}: URL` : 'no URL scheme'}.`,
  );
}

/**
 * Whether pg and TypeORM can read the connection string, both through the WHATWG URL (pg-connection-string reads
 * an empty host, `user@/db?host=/socket/dir`, with a placeholder host the same way) and each percent-decoding the
 * user name and password (TypeORM's parseConnectionUrl throws URIError on a stray `%`). Without this check a
 * password with an unencoded `%`, `#` or `/`, or a port past 65535, stopped the start-up with a stack trace
 * instead of a line naming the setting.
 */
function readableAsUrl(value: string): boolean {
  try {
    const url = new URL(value.replace('@/', '@localhost/'));
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
    return true;
  } catch {
    return false;
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** LOG_LEVEL: one of pino's levels (any letter case); anything else would stop pino with its stack trace. */
function logLevel(env: NodeJS.ProcessEnv, fallback: string): string {
  const raw = env.LOG_LEVEL?.trim();
  if (!raw) return fallback;
  const level = raw.toLowerCase();
  if (!LOG_LEVELS.includes(level)) {
    throw new ConfigError(
      `LOG_LEVEL must be one of ${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}, got "${raw}".`,
    );
  }
  return level;
}

function flag(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}".`);
}

/**
 * A keyring: one or more secrets, comma- or newline-separated, current first, then older ones (base64 never
 * holds a comma or a line break, so the split is unambiguous). Throws ConfigError for an entry too short, an
 * empty entry, or one listed twice.
 */
export function parseSecrets(value: string, source: string): Buffer[] {
  const entries = value
    .trim()
    .split(/[,\r\n]+/)
    .map((entry) => entry.trim());
  const secrets = entries.map((entry, index) => {
    if (!entry) throw new ConfigError(`${source}: entry ${index + 1} of the list is empty.`);
    return parseSecret(entry, entries.length > 1 ? `${source} (entry ${index + 1})` : source);
  });
  const seen = new Set<string>();
  for (const secret of secrets) {
    const id = secret.toString('base64');
    if (seen.has(id)) throw new ConfigError(`${source} lists the same secret twice.`);
    seen.add(id);
  }
  return secrets;
}

export const DEFAULT_AUDIT_RETENTION_DAYS = 365;

/**
 * AUDIT_RETENTION_DAYS: whole days from 1 to 36500 (default 365), or "off" to keep every event. 0 is refused
 * rather than read as either "keep nothing" or "off": which one was meant would be a guess.
 */
function auditRetentionDays(env: NodeJS.ProcessEnv): number | null {
  const raw = env.AUDIT_RETENTION_DAYS?.trim();
  if (!raw) return DEFAULT_AUDIT_RETENTION_DAYS;
  if (raw.toLowerCase() === 'off') return null;
  const days = wholeNumber(raw);
  if (!(days >= 1 && days <= 36500)) {
    throw new ConfigError(
      `AUDIT_RETENTION_DAYS must be a whole number of days from 1 to 36500, or off to keep every event, got "${raw}".`,
    );
  }
  return days;
}

/**
 * A NODE_ENV other than production, development or test runs as development (explorer, introspection and "Did
 * you mean" hints on): accepted, since platforms set names of their own, but worth a warning at start, as
 * NODE_ENV=prod is more likely a typo than a wish to expose the schema.
 */
export function nodeEnvWarning(env: NodeJS.ProcessEnv): string | null {
  const value = env.NODE_ENV?.trim();
  if (!value || ['production', 'development', 'test'].includes(value)) return null;
  return (
    `NODE_ENV=${value} is not "production": the service runs as development (explorer, introspection and ` +
    '"Did you mean" hints on). Set NODE_ENV=production for production.'
  );
}

/** Reads the environment once; the rest of the code receives the frozen result. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Trimmed, as every other setting: "production " (a trailing space from a .env file or a YAML value) ran as
  // development, with the explorer, introspection and "Did you mean" hints on and no secret required.
  const nodeEnvValue = env.NODE_ENV?.trim();
  const nodeEnv = nodeEnvValue === 'production' || nodeEnvValue === 'test' ? nodeEnvValue : 'development';
  const production = nodeEnv === 'production';
  const secretSetting = fromEnvOrFile(env, 'ACCESS_KEY_SECRET');
  const secrets = secretSetting ? parseSecrets(secretSetting.value, secretSetting.source) : [];
  const secret = secrets[0] ?? null;
  if (production && !secret) {
    throw new ConfigError('ACCESS_KEY_SECRET (or ACCESS_KEY_SECRET_FILE) is required when NODE_ENV=production.');
  }
  const host = env.HOST || '127.0.0.1';
  const port = integer(env, 'PORT', 4000, { min: 0, max: 65535 });
  const metricsPort = !blank(env, 'METRICS_PORT') ? integer(env, 'METRICS_PORT', 0, { min: 0, max: 65535 }) : null;
  // Port 0 picks a free port each time, so two zeros never collide.
  if (metricsPort !== null && metricsPort !== 0 && metricsPort === port) {
    throw new ConfigError('METRICS_PORT must differ from PORT: metrics are never served on the public port.');
  }
  const requestTimeoutMs = integer(env, 'REQUEST_TIMEOUT_MS', 30_000, { min: 100, max: 3_600_000 });
  const headersTimeoutMs = integer(env, 'HEADERS_TIMEOUT_MS', 10_000, { min: 100, max: 3_600_000 });
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(
      `HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not exceed REQUEST_TIMEOUT_MS (${requestTimeoutMs}).`,
    );
  }
  const maxHeapUsedMb = !blank(env, 'MAX_HEAP_USED_MB')
    ? integer(env, 'MAX_HEAP_USED_MB', 0, { min: 0, max: 1_000_000 })
    : null;
  return Object.freeze({
    env: nodeEnv,
    host,
    port,
    databaseUrl: databaseUrl(env),
    dataDir: path.resolve(env.DATA_DIR || '.data'),
    accessKeySecret: secret,
    olderAccessKeySecrets: secrets.slice(1),
    migrateOnStart: flag(env, 'MIGRATE_ON_START', false),
    trustProxy: trustProxy(env.TRUST_PROXY),
    logLevel: logLevel(env, nodeEnv === 'test' ? 'silent' : 'info'),
    explorerEnabled: flag(env, 'GRAPHQL_EXPLORER', !production),
    corsOrigins: corsOrigins(env.CORS_ORIGINS),
    sessionTtlSeconds: duration(env, 'SESSION_TTL', 12 * 3600),
    authRateLimit: Object.freeze({
      maxFailures: integer(env, 'AUTH_FAILURE_LIMIT', 20, { min: 1, max: 1_000_000 }),
      windowSeconds: integer(env, 'AUTH_FAILURE_WINDOW_SECONDS', 300, { min: 1, max: 86400 }),
    }),
    passwordWork: Object.freeze({
      concurrency: integer(env, 'PASSWORD_HASH_CONCURRENCY', 2, { min: 1, max: 64 }),
      queue: integer(env, 'PASSWORD_HASH_QUEUE', 32, { min: 0, max: 10_000 }),
      perClient: integer(env, 'PASSWORD_CHECKS_PER_CLIENT', 4, { min: 1, max: 10_000 }),
    }),
    authCache: Object.freeze({
      maxEntries: integer(env, 'AUTH_CACHE_MAX_ENTRIES', 10_000, { min: 0, max: 10_000_000 }),
      ttlSeconds: integer(env, 'AUTH_CACHE_TTL_SECONDS', 60, { min: 1, max: 3600 }),
    }),
    queryLimits: Object.freeze({
      maxDepth: integer(env, 'MAX_QUERY_DEPTH', DEFAULT_QUERY_LIMITS.maxDepth, { min: 1, max: 100 }),
      maxAliases: integer(env, 'MAX_QUERY_ALIASES', DEFAULT_QUERY_LIMITS.maxAliases, { min: 0, max: 10_000 }),
      maxDirectives: integer(env, 'MAX_QUERY_DIRECTIVES', DEFAULT_QUERY_LIMITS.maxDirectives, { min: 0, max: 10_000 }),
      maxTokens: integer(env, 'MAX_QUERY_TOKENS', DEFAULT_QUERY_LIMITS.maxTokens, { min: 100, max: 1_000_000 }),
      maxCost: integer(env, 'MAX_QUERY_COST', DEFAULT_QUERY_LIMITS.maxCost, { min: 1, max: 100_000_000 }),
      maxFieldRepeats: integer(env, 'MAX_QUERY_FIELD_REPEATS', DEFAULT_QUERY_LIMITS.maxFieldRepeats, {
        min: 1,
        max: 10_000,
      }),
      maxFragmentSpreads: integer(env, 'MAX_QUERY_FRAGMENT_SPREADS', DEFAULT_QUERY_LIMITS.maxFragmentSpreads, {
        min: 1,
        max: 10_000,
      }),
    }),
    db: Object.freeze({
      poolSize: integer(env, 'DB_POOL_SIZE', 10, { min: 1, max: 200 }),
      statementTimeoutMs: integer(env, 'DB_STATEMENT_TIMEOUT_MS', 5000, { min: 0, max: 600000 }),
      idleInTransactionTimeoutMs: integer(env, 'DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', 5000, { min: 0, max: 600000 }),
      connectTimeoutMs: integer(env, 'DB_CONNECT_TIMEOUT_MS', 5000, { min: 100, max: 120000 }),
    }),
    logRequests: flag(env, 'LOG_REQUESTS', nodeEnv === 'development'),
    metrics: Object.freeze({ port: metricsPort, host: env.METRICS_HOST || host }),
    http: Object.freeze({
      requestTimeoutMs,
      headersTimeoutMs,
      // Above the 60 s idle timeout of common load balancers, so they never reuse a connection we just closed.
      keepAliveTimeoutMs: integer(env, 'KEEP_ALIVE_TIMEOUT_MS', 72_000, { min: 100, max: 3_600_000 }),
      maxConnections: !blank(env, 'MAX_CONNECTIONS')
        ? integer(env, 'MAX_CONNECTIONS', 0, { min: 1, max: 10_000_000 })
        : null,
    }),
    auditRetentionDays: auditRetentionDays(env),
    secretScanning: Object.freeze({ githubKeysFile: env.SECRET_SCANNING_GITHUB_KEYS?.trim() || null }),
    loadShedding: Object.freeze({
      maxEventLoopDelayMs: integer(env, 'MAX_EVENT_LOOP_DELAY_MS', 1000, { min: 0, max: 600_000 }),
      maxHeapUsedBytes: maxHeapUsedMb === null ? null : maxHeapUsedMb * 1024 * 1024,
    }),
  });
}
