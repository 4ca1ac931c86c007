import type { Logger } from 'pino';
import type { DataSource, EntityManager } from 'typeorm';

import { type Authenticated, principalFrom } from '../authentication/principal';
import { runPreparedForIds, runPreparedOnConnection } from '../db/prepared';
import { oneOrAny } from '../db/scope';
import { USER_COLUMNS, type UserRow } from '../users/user.queries';
import { AccessKey } from './access-key.entity';
import { type Clock, expiryMs, systemClock } from './clock';
import type { KeyCrypto } from './key-crypto';
import { generateAccessKey, keyHint } from './key-format';

/** At most one `last_used_at` write per key per this many seconds, whatever the traffic. */
/** Opens the key lookup's SQL, so tests and operators' statement logs can count lookups whatever the SQL's shape. */
export const KEY_LOOKUP_MARK = '/* access-key lookup */';

const LAST_USED_RESOLUTION_SECONDS = 60;
const USE_FLUSH_DELAY_MS = 1000;
const MAX_TRACKED_KEYS = 100_000;
export const MAX_GRACE_PERIOD_SECONDS = 7 * 24 * 3600;
/**
 * In `issue`: a grace period was asked for ($7) and the key it would keep working has not expired by the
 * service's clock ($9): an expired key is never brought back by a regeneration's grace period.
 */
const GRACED = `($7::int > 0 AND (k.expires_at IS NULL OR ${expiryMs('k.expires_at')} > $9::timestamptz))`;
/** A use of a row's current key ($1: used digests) not yet written in the last $2 seconds. */
const CURRENT_KEY_DUE =
  '(key_digest = ANY($1::bytea[]) AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2)))';
/** A use of a row's previous key, still in its grace period, not yet written in the last $2 seconds. */
const PREVIOUS_KEY_DUE =
  '(previous_key_digest = ANY($1::bytea[]) AND previous_key_expires_at > now() ' +
  'AND (previous_key_last_used_at IS NULL OR previous_key_last_used_at < now() - make_interval(secs => $2)))';

/**
 * AccessKeyService.flushUse's statement ($1 the digests used, $2 LAST_USED_RESOLUTION_SECONDS): the due rows
 * locked in user id order (`waiting`: for rows other transactions hold too, else skipping them), then written.
 * Answers the rows that were due but skipped (their digests), none when waiting (one row at a time: see
 * flushUse).
 */
function writeUseStatement(waiting: boolean): string {
  return `WITH due AS MATERIALIZED (
      SELECT user_id FROM access_keys WHERE ${CURRENT_KEY_DUE} OR ${PREVIOUS_KEY_DUE}
       ORDER BY user_id FOR NO KEY UPDATE${waiting ? '' : ' SKIP LOCKED'}
    ),
    written AS (
      UPDATE access_keys k SET last_used_at = CASE WHEN ${CURRENT_KEY_DUE} THEN now() ELSE last_used_at END,
             previous_key_last_used_at = CASE WHEN ${PREVIOUS_KEY_DUE} THEN now() ELSE previous_key_last_used_at END
        FROM due
       WHERE k.user_id = due.user_id AND (${CURRENT_KEY_DUE} OR ${PREVIOUS_KEY_DUE})
    )
    SELECT key_digest, previous_key_digest FROM access_keys
     WHERE (${CURRENT_KEY_DUE} OR ${PREVIOUS_KEY_DUE}) AND user_id NOT IN (SELECT user_id FROM due)`;
}
const WRITE_USE_SKIPPING_LOCKED = writeUseStatement(false);
const WRITE_USE_WAITING = writeUseStatement(true);

/** Key columns as `key_*` aliases, for reads that join a user's key (see UserService). */
export const JOINED_KEY_COLUMNS =
  'k.user_id AS key_user_id, k.organization_id AS key_organization_id, k.key_ciphertext AS key_ciphertext, ' +
  'k.key_hint AS key_hint, k.created_at AS key_created_at, k.created_by AS key_created_by, ' +
  'k.last_used_at AS key_last_used_at, k.previous_key_expires_at AS key_previous_key_expires_at, ' +
  'k.previous_key_last_used_at AS key_previous_key_last_used_at, k.leak_reported_at AS key_leak_reported_at, ' +
  'k.leak_report_location AS key_leak_report_location, k.leak_report_source AS key_leak_report_source, ' +
  'k.leaked_key_hint AS key_leaked_key_hint, k.expires_at AS key_expires_at';

export interface JoinedKeyRow {
  key_user_id: string | null;
  key_organization_id: string;
  key_ciphertext: Buffer;
  key_hint: string;
  key_created_at: Date;
  key_created_by: string | null;
  key_last_used_at: Date | null;
  key_previous_key_expires_at: Date | null;
  key_previous_key_last_used_at: Date | null;
  key_leak_reported_at: Date | null;
  key_leak_report_location: string | null;
  key_leak_report_source: string | null;
  key_leaked_key_hint: string | null;
  key_expires_at: Date | null;
}

/** The key of a joined row, or null when the user has none (an imported user). */
export function accessKeyFromJoinedRow(row: JoinedKeyRow): AccessKey | null {
  if (row.key_user_id === null) return null;
  return Object.assign(new AccessKey(), {
    userId: row.key_user_id,
    organizationId: row.key_organization_id,
    keyCiphertext: row.key_ciphertext,
    keyHint: row.key_hint,
    createdAt: row.key_created_at,
    createdBy: row.key_created_by,
    lastUsedAt: row.key_last_used_at,
    previousKeyExpiresAt: row.key_previous_key_expires_at,
    previousKeyLastUsedAt: row.key_previous_key_last_used_at,
    leakReportedAt: row.key_leak_reported_at,
    leakReportLocation: row.key_leak_report_location,
    leakReportSource: row.key_leak_report_source,
    leakedKeyHint: row.key_leaked_key_hint,
    expiresAt: row.key_expires_at,
  });
}

export interface IssuedKey {
  key: string;
  /** The stored row as this statement left it (with the grace period's end): what later reads in the request show. */
  row: AccessKey;
}

export class AccessKeyService {
  /** By key digest (base64): a key replaced meanwhile never has its uses written onto its successor. */
  private readonly lastMarkedMs = new Map<string, number>();
  private readonly pendingUse = new Set<string>();
  private useTimer: NodeJS.Timeout | null = null;
  /** flushUse's write in flight, if any (each call waits for it first). */
  private readonly writingUse = new Set<Promise<void>>();

  constructor(private readonly deps: { dataSource: DataSource; keyCrypto: KeyCrypto; logger: Logger; clock?: Clock }) {}

  private get clock(): Clock {
    return this.deps.clock ?? systemClock;
  }

  /**
   * Creates or replaces the user's key in one statement. Concurrent calls for one user serialize on the
   * row lock of ON CONFLICT, so whichever commits last is the single current key; with a grace period the
   * key it replaced keeps working until the row's `previousKeyExpiresAt` (never past that key's own expiry;
   * none for a key already expired by the injected clock).
   * The new key expires its organization's `maxKeyAgeDays` after now (by the injected clock), or never.
   */
  async issue(
    manager: EntityManager,
    params: { userId: string; organizationId: string; createdBy: string | null; gracePeriodSeconds?: number },
  ): Promise<IssuedKey> {
    const key = generateAccessKey();
    const { keyCrypto } = this.deps;
    const rows: JoinedKeyRow[] = await manager.query(
      `INSERT INTO access_keys AS k
         (user_id, organization_id, key_digest, key_ciphertext, key_hint, created_by, secret_fingerprint, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $8,
         (SELECT $9::timestamptz + make_interval(days => o.max_key_age_days) FROM organizations o WHERE o.id = $2))
       ON CONFLICT (user_id) DO UPDATE SET
         key_digest = EXCLUDED.key_digest,
         key_ciphertext = EXCLUDED.key_ciphertext,
         key_hint = EXCLUDED.key_hint,
         created_at = now(),
         created_by = EXCLUDED.created_by,
         last_used_at = NULL,
         previous_key_digest = CASE WHEN ${GRACED} THEN k.key_digest END,
         previous_key_expires_at = CASE WHEN ${GRACED} THEN LEAST(now() + make_interval(secs => $7::int), k.expires_at) END,
         -- Its age, for a key policy applied to existing keys later (key-policy.service.ts).
         previous_key_created_at = CASE WHEN ${GRACED} THEN k.created_at END,
         -- Its own expiry, decided by the service's clock as a current key's is (lookup, Authority).
         previous_key_own_expires_at = CASE WHEN ${GRACED} THEN k.expires_at END,
         -- The key a grace period keeps working was last used when it was still the current one.
         previous_key_last_used_at = CASE WHEN ${GRACED} THEN k.last_used_at END,
         secret_fingerprint = EXCLUDED.secret_fingerprint,
         expires_at = EXCLUDED.expires_at
       RETURNING ${JOINED_KEY_COLUMNS}`,
      [
        params.userId,
        params.organizationId,
        keyCrypto.digest(key),
        keyCrypto.encrypt(key, params.userId),
        keyHint(key),
        params.createdBy,
        params.gracePeriodSeconds ?? 0,
        keyCrypto.fingerprint,
        new Date(this.clock.now()),
      ],
    );
    return { key, row: accessKeyFromJoinedRow(rows[0])! };
  }

  /**
   * The owner of a key, by its digests under every secret of the keyring (KeyCrypto.digests: during a
   * rotation a row may still be under an older one), if the key is current and not expired (by the injected
   * clock) or in its grace period, and its user and organization active. The principal carries the key's digests
   * under every secret (what the act-time check matches, so a rotation mid-request is not a replacement) and the
   * key's expiry, which the auth cache compares with the clock on every hit.
   * The service's clock is read once the statement has its connection (not before a wait for one: a busy pool);
   * PostgreSQL's (a grace period's end, `valid_for_ms`) as the row is read, with clock_timestamp(), not now(), the
   * moment the statement's transaction began, before any wait for a table lock (a migration's). The service's
   * clock is still read before those waits, so the caller compares the principal's key expiry with it again once
   * the answer is in (Authenticator.lookup).
   */
  async lookup(digests: readonly Buffer[]): Promise<Authenticated | null> {
    // One secret (no rotation under way): one digest, compared as a value (see oneOrAny).
    const { comparison: isDigest, value: digestValue } = oneOrAny('$1', digests);
    const rows = await runPreparedOnConnection<
      UserRow & {
        valid_for_ms: number | null;
        matched_digest: Buffer;
        key_expires_at: Date | null;
        previous_key_own_expires_at: Date | null;
      }
    >(
      this.deps.dataSource,
      `${KEY_LOOKUP_MARK} SELECT ${USER_COLUMNS},
                    CASE WHEN k.key_digest ${isDigest} THEN NULL
                         ELSE (EXTRACT(EPOCH FROM k.previous_key_expires_at - clock_timestamp()) * 1000)::float8 END AS valid_for_ms,
                    CASE WHEN k.key_digest ${isDigest} THEN k.key_digest ELSE k.previous_key_digest END AS matched_digest,
                    k.expires_at AS key_expires_at, k.previous_key_own_expires_at
               FROM access_keys k
               JOIN users u ON u.id = k.user_id
               JOIN organizations o ON o.id = u.organization_id
              WHERE ((k.key_digest ${isDigest} AND (k.expires_at IS NULL OR ${expiryMs('k.expires_at')} > $2))
                     OR (k.previous_key_digest ${isDigest} AND k.previous_key_expires_at > clock_timestamp()
                         AND (k.previous_key_own_expires_at IS NULL OR ${expiryMs('k.previous_key_own_expires_at')} > $2)))
                AND u.is_active AND o.is_active`,
      () => [digestValue, new Date(this.clock.now())],
    );
    const row = rows[0];
    if (!row) return null;
    // A key in its grace period has no validity limit only when it is the current one.
    const current = row.valid_for_ms === null;
    const usedDigest = row.matched_digest.toString('base64');
    const principal = principalFrom(row, {
      kind: 'ACCESS_KEY',
      currentKeyDigest: current ? usedDigest : undefined,
      previousKeyDigest: current ? undefined : usedDigest,
      keyDigests: digests,
      // A replaced key in its grace period keeps its own expiry too (the cache checks it on every hit).
      keyExpiresAtMs: (current ? row.key_expires_at : row.previous_key_own_expires_at)?.getTime(),
    });
    return { principal, validForMs: row.valid_for_ms };
  }

  /**
   * Notes that a key (by its lookup digest, base64) was used: the user's current key, or the key a grace
   * period keeps working. At most one note per key per minute is kept, and notes are written together a
   * second later, off the request path: no write per request, whatever the traffic. Each note is written
   * against the key that made it as the database has it then: `last_used_at` while it is current,
   * `previous_key_last_used_at` while it is in its grace period, nowhere once it no longer works.
   */
  markUsed(keyDigest: string): void {
    const now = Date.now();
    const last = this.lastMarkedMs.get(keyDigest);
    if (last !== undefined && now - last < LAST_USED_RESOLUTION_SECONDS * 1000) return;
    if (this.lastMarkedMs.size >= MAX_TRACKED_KEYS) this.forgetOldMarks(now);
    this.lastMarkedMs.set(keyDigest, now);
    this.pendingUse.add(keyDigest);
    if (!this.useTimer) {
      this.useTimer = setTimeout(() => void this.flushUse(), USE_FLUSH_DELAY_MS);
      this.useTimer.unref();
    }
  }

  /**
   * Writes the pending notes of use in one statement. A digest is matched against both the current and the
   * previous key of every row, so a use waiting here when its key is replaced with a grace period lands on
   * `previous_key_last_used_at`, and never on the new key. The time guards keep each column to one write a
   * minute across instances. The rows are locked by user id, as a leak report locks the key rows it revokes:
   * an UPDATE that locked them in the order it scanned them deadlocked with a report naming two of them.
   * A row another transaction holds (a key policy rewriting an organization's keys, a regeneration, a leak
   * report, a batch of key views) is skipped by that statement, then written alone, one such row at a time,
   * waiting for it: a statement that waited with other rows locked would hold those rows, and every reveal or
   * write of those keys, of any organization, behind one organization's act; alone it holds nothing else while
   * it waits, and a row that reveals keep locked FOR SHARE for a few milliseconds again and again under load is
   * still written. One write at a time: a call waits for the one in flight first (so one waiting for a held row
   * takes one pooled connection, not one a second, and the server's last call, Services.stop, returns only
   * once nothing is left to run after the data source is gone).
   */
  async flushUse(): Promise<void> {
    while (this.writingUse.size > 0) await Promise.all([...this.writingUse]);
    if (this.useTimer) clearTimeout(this.useTimer);
    this.useTimer = null;
    if (this.pendingUse.size === 0) return;
    const sent = [...this.pendingUse];
    this.pendingUse.clear();
    const writing = this.writeUse(sent);
    this.writingUse.add(writing);
    try {
      await writing;
    } finally {
      this.writingUse.delete(writing);
    }
  }

  /**
   * flushUse's writes of the notes `sent` (base64 digests): one statement for the rows no other transaction
   * holds, then one for each row it skipped, in turn. A failure is logged (warn), its notes dropped.
   */
  private async writeUse(sent: readonly string[]): Promise<void> {
    const skipped = await this.runUseWrite(WRITE_USE_SKIPPING_LOCKED, sent);
    if (!skipped?.length) return;
    const wanted = new Set(sent);
    const held = new Set<string>();
    for (const row of skipped) {
      for (const digest of [row.key_digest, row.previous_key_digest]) {
        const note = digest?.toString('base64');
        if (note !== undefined && wanted.has(note)) held.add(note);
      }
    }
    for (const note of held) await this.runUseWrite(WRITE_USE_WAITING, [note]);
  }

  private runUseWrite(
    statement: string,
    notes: readonly string[],
  ): Promise<Array<{ key_digest: Buffer; previous_key_digest: Buffer | null }> | undefined> {
    return this.deps.dataSource
      .query(statement, [notes.map((note) => Buffer.from(note, 'base64')), LAST_USED_RESOLUTION_SECONDS])
      .catch((error: unknown) => {
        this.deps.logger.warn({ err: error }, 'could not record access key use');
        return undefined;
      });
  }

  private forgetOldMarks(now: number): void {
    for (const [keyDigest, markedMs] of this.lastMarkedMs) {
      if (now - markedMs >= LAST_USED_RESOLUTION_SECONDS * 1000) this.lastMarkedMs.delete(keyDigest);
    }
    // Still full of recent marks: forget them all rather than grow; the SQL guard still holds the line.
    if (this.lastMarkedMs.size >= MAX_TRACKED_KEYS) this.lastMarkedMs.clear();
  }

  /**
   * The key rows of these users (current key, grace period and leak-report columns), one statement; users
   * without a key have no row in the result. Not checked against any ability: callers are the request loaders,
   * which load keys only of users the caller was allowed to read.
   */
  async findByUserIds(userIds: readonly string[]): Promise<AccessKey[]> {
    const rows = await runPreparedForIds<JoinedKeyRow>(this.deps.dataSource, {
      select: `SELECT ${JOINED_KEY_COLUMNS} FROM access_keys k`,
      column: 'k.user_id',
      ids: userIds,
    });
    return rows.map(accessKeyFromJoinedRow).filter((key): key is AccessKey => key !== null);
  }

  /**
   * The key itself, decrypted from the row (KeyCrypto.decryptAny: the current secret, or an older one of the
   * keyring until rotate-secret reaches the row). Callers record the view (ACCESS_KEY_VIEWED)
   * before they return it, and only for callers granted `accessKey` (abilities.ts).
   * @throws Error when the ciphertext opens with no secret of the keyring (an unknown ACCESS_KEY_SECRET, or a
   *   ciphertext moved to another user's row).
   */
  reveal(row: Pick<AccessKey, 'userId' | 'keyCiphertext'>): string {
    // Under an older secret of the keyring until rotate-secret reaches the row.
    return this.deps.keyCrypto.decryptAny(row.keyCiphertext, row.userId);
  }
}
