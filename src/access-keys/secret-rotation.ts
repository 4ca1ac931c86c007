import type { DataSource, EntityManager } from 'typeorm';

import type { KeyCrypto } from './key-crypto';

export const DEFAULT_ROTATION_BATCH_SIZE = 100;
const FIRST_UUID = '00000000-0000-0000-0000-000000000000';

export class RotationError extends Error {}

export interface RotationProgress {
  /** Keys moved to the current secret by this run so far. */
  readonly rotated: number;
  /** Batches (transactions) committed by this run so far. */
  readonly batches: number;
}

export interface RotationResult extends RotationProgress {
  /**
   * True when the database's recorded secret fingerprint now names the current secret (every key is under
   * it), so the older secrets may leave the keyring: startup accepts the current one alone.
   */
  readonly fingerprintMoved: boolean;
  /**
   * What cannot be re-digested, because only its digest is stored: replaced keys in their grace period and
   * session tokens, which stay under the secret they were issued with. This is the latest end of those alive
   * now; removing the older secrets before it ends them early (null: nothing alive).
   */
  readonly olderSecretsUsedUntil: Date | null;
}

interface Row {
  user_id: string;
  key_ciphertext: Buffer;
  secret_fingerprint: Buffer | null;
}

/**
 * Re-encrypts and re-digests every access key under the keyring's current secret, `batchSize` rows per
 * transaction, online: each batch locks its rows (FOR UPDATE, in key order, skipping rows another transaction
 * holds: a regeneration writes them under the current secret itself, an act holds its actor's), rewrites them
 * and commits, and the auth-change trigger evicts their owners' cached credentials on every instance. A second
 * pass then waits for the rows skipped, one row per transaction (see lockRows). Lookups match a key under
 * any secret of the keyring meanwhile. Each row records its secret's fingerprint, so a run killed at any
 * point loses nothing and a rerun continues with the rows not yet under the current secret. Once none is
 * left, the database's recorded fingerprint moves to the current secret, in a transaction that re-counts.
 *
 * `afterBatch` runs after each commit (progress output; a test's pause). Throws RotationError when a row
 * opens with no secret of the keyring (the secret it is under was left out) or when keys under an older
 * secret keep appearing (an instance still has the old secret first).
 */
export async function rotateSecret(params: {
  dataSource: DataSource;
  keyCrypto: KeyCrypto;
  batchSize?: number;
  afterBatch?: (progress: RotationProgress) => Promise<void> | void;
}): Promise<RotationResult> {
  const { dataSource, keyCrypto } = params;
  const batchSize = params.batchSize ?? DEFAULT_ROTATION_BATCH_SIZE;
  const current = keyCrypto.fingerprint;
  let rotated = 0;
  let batches = 0;
  // First pass skips rows another transaction holds; a second pass waits for any that were skipped.
  for (const waits of [false, true]) {
    let after = FIRST_UUID;
    for (;;) {
      const step = await dataSource.transaction(async (manager) => {
        const { rows, last } = await lockRows(manager, { current, after, batchSize, waits });
        if (rows.length > 0) {
          const keys = rows.map((row) => openKey(keyCrypto, row));
          await manager.query(
            `UPDATE access_keys AS k SET key_digest = v.digest, key_ciphertext = v.ciphertext, secret_fingerprint = $1
               FROM unnest($2::uuid[], $3::bytea[], $4::bytea[]) AS v(user_id, digest, ciphertext)
              WHERE k.user_id = v.user_id`,
            [
              current,
              rows.map((row) => row.user_id),
              keys.map((key) => keyCrypto.digest(key)),
              rows.map((row, index) => keyCrypto.encrypt(keys[index], row.user_id)),
            ],
          );
        }
        return { rotated: rows.length, last };
      });
      if (step.last === null) break;
      after = step.last;
      if (step.rotated === 0) continue;
      rotated += step.rotated;
      batches++;
      await params.afterBatch?.({ rotated, batches });
    }
  }
  const fingerprintMoved = await moveFingerprint(dataSource, current);
  const [{ until }] = await dataSource.query(
    `SELECT GREATEST(
       (SELECT max(previous_key_expires_at) FROM access_keys WHERE previous_key_expires_at > now()),
       (SELECT max(expires_at) FROM sessions WHERE revoked_at IS NULL AND expires_at > now())) AS until`,
  );
  return { rotated, batches, fingerprintMoved, olderSecretsUsedUntil: (until as Date | null) ?? null };
}

const ROW_COLUMNS = 'user_id, key_ciphertext, secret_fingerprint';

/**
 * The next rows after `after` not under `current`, locked FOR UPDATE, and the last user id looked at (null:
 * none left). Without `waits`: up to `batchSize` rows in key order, skipping any another transaction holds, so
 * it never waits. With `waits`: the next such row alone, waited for, and none when it is under `current` once
 * locked (a regeneration committed meanwhile). One row per transaction because an act holds its actor's key
 * row FOR SHARE from its check to its commit and writes another user's in between (a regeneration, a leak
 * report, a key policy applied to existing keys): that is not user id order, so a rotation that held one row
 * while it waited for the next deadlocked with such an act (test/access-keys/secret-rotation-attacks.test.ts).
 * Waiting while holding no key row, it cannot be part of a cycle.
 */
async function lockRows(
  manager: EntityManager,
  params: { current: Buffer; after: string; batchSize: number; waits: boolean },
): Promise<{ rows: Row[]; last: string | null }> {
  const { current, after } = params;
  if (!params.waits) {
    const rows: Row[] = await manager.query(
      `SELECT ${ROW_COLUMNS} FROM access_keys WHERE user_id > $2 AND secret_fingerprint IS DISTINCT FROM $1
        ORDER BY user_id LIMIT $3 FOR UPDATE SKIP LOCKED`,
      [current, after, params.batchSize],
    );
    return { rows, last: rows.at(-1)?.user_id ?? null };
  }
  const [next]: Array<{ user_id: string }> = await manager.query(
    `SELECT user_id FROM access_keys WHERE user_id > $2 AND secret_fingerprint IS DISTINCT FROM $1
      ORDER BY user_id LIMIT 1`,
    [current, after],
  );
  if (!next) return { rows: [], last: null };
  const rows: Row[] = await manager.query(
    `SELECT ${ROW_COLUMNS} FROM access_keys WHERE user_id = $2 AND secret_fingerprint IS DISTINCT FROM $1 FOR UPDATE`,
    [current, next.user_id],
  );
  return { rows, last: next.user_id };
}

function openKey(keyCrypto: KeyCrypto, row: Row): string {
  const sealedBy = row.secret_fingerprint ? keyCrypto.withFingerprint(row.secret_fingerprint) : undefined;
  try {
    return sealedBy
      ? sealedBy.decrypt(row.key_ciphertext, row.user_id)
      : keyCrypto.decryptAny(row.key_ciphertext, row.user_id);
  } catch {
    throw new RotationError(
      `The access key of user ${row.user_id} opens with no secret of ACCESS_KEY_SECRET: add the secret it was ` +
        'stored under to the list (after the current one) and run rotate-secret again.',
    );
  }
}

/** Moves the recorded fingerprint to the current secret if no key is left under another; false otherwise. */
async function moveFingerprint(dataSource: DataSource, current: Buffer): Promise<boolean> {
  return dataSource.transaction(async (manager) => {
    await manager.query(`SELECT 1 FROM key_secret_fingerprint WHERE id FOR UPDATE`);
    const [{ n: left }] = await manager.query(
      `SELECT count(*)::int AS n FROM access_keys WHERE secret_fingerprint IS DISTINCT FROM $1`,
      [current],
    );
    if (left > 0) {
      throw new RotationError(
        `${left} access keys were issued under an older secret while this ran: an instance still has the old ` +
          'secret first in ACCESS_KEY_SECRET. Put the new secret first on every instance, then run rotate-secret again.',
      );
    }
    await manager.query(
      `INSERT INTO key_secret_fingerprint (id, fingerprint) VALUES (true, $1) ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint`,
      [current],
    );
    return true;
  });
}
