import path from 'node:path';

export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly host: string;
  readonly port: number;
  /** Absent: run the embedded PostgreSQL with its data in `dataDir`. */
  readonly databaseUrl: string | null;
  readonly dataDir: string;
  /** Absent outside production: the embedded default generates one into `dataDir`. */
  readonly accessKeySecret: Buffer | null;
  readonly migrateOnStart: boolean;
  /** Believe X-Forwarded-For (behind a load balancer); off by default so clients cannot pick their address. */
  readonly trustProxy: boolean;
  readonly logLevel: string;
  readonly explorerEnabled: boolean;
  readonly corsOrigins: readonly string[];
  readonly db: {
    readonly poolSize: number;
    readonly statementTimeoutMs: number;
    readonly connectTimeoutMs: number;
  };
}

export class ConfigError extends Error {}

const MIN_SECRET_BYTES = 32;

export function parseSecret(value: string, source: string): Buffer {
  const secret = Buffer.from(value.trim(), 'base64');
  if (secret.length < MIN_SECRET_BYTES) {
    throw new ConfigError(
      `${source} must be at least ${MIN_SECRET_BYTES} random bytes, base64-encoded ` +
        `(for example: node -e "console.log(require('crypto').randomBytes(32).toString('base64'))").`,
    );
  }
  return secret;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, range: { min: number; max: number }): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw new ConfigError(`${name} must be a whole number from ${range.min} to ${range.max}, got "${raw}".`);
  }
  return value;
}

function flag(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}".`);
}

/** Reads the environment once; the rest of the code receives the frozen result. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const nodeEnv = env.NODE_ENV === 'production' || env.NODE_ENV === 'test' ? env.NODE_ENV : 'development';
  const production = nodeEnv === 'production';
  const secret = env.ACCESS_KEY_SECRET ? parseSecret(env.ACCESS_KEY_SECRET, 'ACCESS_KEY_SECRET') : null;
  if (production && !secret) {
    throw new ConfigError('ACCESS_KEY_SECRET is required when NODE_ENV=production.');
  }
  return Object.freeze({
    env: nodeEnv,
    host: env.HOST || '127.0.0.1',
    port: integer(env, 'PORT', 4000, { min: 0, max: 65535 }),
    databaseUrl: env.DATABASE_URL || null,
    dataDir: path.resolve(env.DATA_DIR || '.data'),
    accessKeySecret: secret,
    migrateOnStart: flag(env, 'MIGRATE_ON_START', false),
    trustProxy: flag(env, 'TRUST_PROXY', false),
    logLevel: env.LOG_LEVEL || (nodeEnv === 'test' ? 'silent' : 'info'),
    explorerEnabled: flag(env, 'GRAPHQL_EXPLORER', !production),
    corsOrigins: (env.CORS_ORIGINS ?? '')
      .split(',')
      .map((origin) => origin.trim())
      .filter(Boolean),
    db: Object.freeze({
      poolSize: integer(env, 'DB_POOL_SIZE', 10, { min: 1, max: 200 }),
      statementTimeoutMs: integer(env, 'DB_STATEMENT_TIMEOUT_MS', 5000, { min: 0, max: 600000 }),
      connectTimeoutMs: integer(env, 'DB_CONNECT_TIMEOUT_MS', 5000, { min: 100, max: 120000 }),
    }),
  });
}
