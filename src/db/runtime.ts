import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';

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
  readonly embedded: EmbeddedPostgres | null;
  close(): Promise<void>;
}

/**
 * Connects to DATABASE_URL or, without one, starts the embedded PostgreSQL; applies migrations when asked
 * (always for the embedded default) and refuses a secret that does not match the one the keys were stored with.
 */
export async function openDatabase(params: { config: Config; logger: Logger; migrate?: boolean }): Promise<Database> {
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
  const close = async () => {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.stop();
  };
  try {
    await dataSource.initialize();
    if (params.migrate ?? (embedded !== null || config.migrateOnStart)) {
      const applied = await dataSource.runMigrations({ transaction: 'each' });
      for (const migration of applied) logger.info({ migration: migration.name }, 'applied migration');
    }
    const keyCrypto = new KeyCrypto(secret, olderSecrets);
    if (!(await dataSource.showMigrations())) await checkSecret(dataSource, keyCrypto);
    else logger.warn('database migrations are pending: run `npm run migrate` (/readyz answers 503 until then)');
    return { dataSource, databaseUrl: url, keyCrypto, embedded, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

export class SecretMismatchError extends Error {}

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
      'ACCESS_KEY_SECRET does not match the secret this database was set up with, so the stored access keys ' +
        'could not be read. Start with the original secret (or, while rotating, a list that includes it).',
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
