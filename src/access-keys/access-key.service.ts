import type { DataSource, EntityManager } from 'typeorm';
import type { Logger } from 'pino';
import { AccessKey } from './access-key.entity';
import type { Principal } from '../auth/principal';
import { generateAccessKey, keyHint } from '../auth/key-format';
import type { KeyCrypto } from '../auth/key-crypto';
import type { Role } from '../users/user.entity';

/** At most one `last_used_at` write per key per this many seconds, whatever the traffic. */
const LAST_USED_RESOLUTION_SECONDS = 60;
export const MAX_GRACE_PERIOD_SECONDS = 7 * 24 * 3600;

export interface IssuedKey {
  key: string;
  previousKeyExpiresAt: Date | null;
}

interface KeyOwnerRow {
  user_id: string;
  organization_id: string;
  role: Role;
  last_used_stale: boolean;
}

export class AccessKeyService {
  private readonly lastUsedWrites = new Set<string>();

  constructor(
    private readonly deps: { dataSource: DataSource; keyCrypto: KeyCrypto; logger: Logger },
  ) {}

  /**
   * Creates or replaces the user's key in one statement. Concurrent calls for one user serialize on the
   * row lock of ON CONFLICT, so whichever commits last is the single current key; with a grace period the
   * key it replaced keeps working until `previousKeyExpiresAt`.
   */
  async issue(
    manager: EntityManager,
    params: { userId: string; organizationId: string; createdBy: string | null; gracePeriodSeconds?: number },
  ): Promise<IssuedKey> {
    const key = generateAccessKey();
    const { keyCrypto } = this.deps;
    const rows: Array<{ previous_key_expires_at: Date | null }> = await manager.query(
      `INSERT INTO access_keys AS k (user_id, organization_id, key_digest, key_ciphertext, key_hint, created_by)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (user_id) DO UPDATE SET
         key_digest = EXCLUDED.key_digest,
         key_ciphertext = EXCLUDED.key_ciphertext,
         key_hint = EXCLUDED.key_hint,
         created_at = now(),
         created_by = EXCLUDED.created_by,
         last_used_at = NULL,
         previous_key_digest = CASE WHEN $7::int > 0 THEN k.key_digest END,
         previous_key_expires_at = CASE WHEN $7::int > 0 THEN now() + make_interval(secs => $7::int) END
       RETURNING previous_key_expires_at`,
      [
        params.userId,
        params.organizationId,
        keyCrypto.digest(key),
        keyCrypto.encrypt(key, params.userId),
        keyHint(key),
        params.createdBy,
        params.gracePeriodSeconds ?? 0,
      ],
    );
    return { key, previousKeyExpiresAt: rows[0].previous_key_expires_at };
  }

  /** The principal a well-formed key belongs to, or null when it is unknown, replaced, expired or inactive. */
  async authenticate(key: string): Promise<Principal | null> {
    const digest = this.deps.keyCrypto.digest(key);
    const rows: KeyOwnerRow[] = await this.deps.dataSource.query(
      `SELECT u.id AS user_id, u.organization_id, u.role,
              (k.last_used_at IS NULL OR k.last_used_at < now() - make_interval(secs => $2)) AS last_used_stale
         FROM access_keys k
         JOIN users u ON u.id = k.user_id
         JOIN organizations o ON o.id = u.organization_id
        WHERE (k.key_digest = $1 OR (k.previous_key_digest = $1 AND k.previous_key_expires_at > now()))
          AND u.is_active AND o.is_active`,
      [digest, LAST_USED_RESOLUTION_SECONDS],
    );
    const row = rows[0];
    if (!row) return null;
    if (row.last_used_stale) this.touch(row.user_id);
    return { kind: 'ACCESS_KEY', userId: row.user_id, organizationId: row.organization_id, role: row.role };
  }

  /** Records use off the request path; the WHERE keeps it to one write a minute across all instances. */
  private touch(userId: string): void {
    if (this.lastUsedWrites.has(userId)) return;
    this.lastUsedWrites.add(userId);
    this.deps.dataSource
      .query(
        `UPDATE access_keys SET last_used_at = now()
          WHERE user_id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))`,
        [userId, LAST_USED_RESOLUTION_SECONDS],
      )
      .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'could not record access key use'))
      .finally(() => this.lastUsedWrites.delete(userId));
  }

  async findByUserIds(userIds: readonly string[]): Promise<AccessKey[]> {
    return this.deps.dataSource
      .getRepository(AccessKey)
      .createQueryBuilder('k')
      .where('k.user_id = ANY(:userIds)', { userIds })
      .getMany();
  }

  reveal(row: AccessKey): string {
    return this.deps.keyCrypto.decrypt(row.keyCiphertext, row.userId);
  }
}
