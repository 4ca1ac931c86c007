import type { DataSource, EntityManager } from 'typeorm';
import { AuditAction, ActorKind } from '../audit/audit-event.entity';
import { auditActorOf, type AuditService } from '../audit/audit.service';
import type { KeyCrypto } from '../auth/key-crypto';
import { generateSessionToken } from '../auth/key-format';
import { hashPassword, MAX_PASSWORD_LENGTH, verifyPassword } from '../auth/password';
import { principalFrom, type Authenticated } from '../auth/principal';
import { USER_COLUMNS, type UserRow } from '../users/user.queries';
import { runPrepared } from '../db/prepared';
import type { AuthCache } from '../auth/auth-cache';
import type { AuthRateLimiter } from '../auth/rate-limit';
import type { Actor } from '../context';
import { BadInputError, DomainError, ForbiddenError } from '../errors';
import { User } from '../users/user.entity';
import { canonicalEmail, validPasswordHash } from '../users/user.validation';

export interface LoginResult {
  token: string;
  expiresAt: Date;
  user: User;
}

const LOGIN_FAILED_MESSAGE = 'Email or password is incorrect.';

/** Sign-in for people. Tokens are opaque, stored only as digests, and expire at a fixed time (no sliding). */
export class SessionService {
  /** Verified against when the email is unknown, so both failures take the same time. */
  private dummyHash: Promise<string> | null = null;

  constructor(
    private readonly deps: {
      dataSource: DataSource;
      keyCrypto: KeyCrypto;
      audit: AuditService;
      rateLimiter: AuthRateLimiter;
      authCache: AuthCache;
      sessionTtlSeconds: number;
    },
  ) {}

  async login(params: { email: string; password: string; ip: string; requestId: string }): Promise<LoginResult> {
    const { dataSource, audit } = this.deps;
    const user = await dataSource
      .getRepository(User)
      .createQueryBuilder('u')
      .addSelect('u.passwordHash')
      .innerJoin('organizations', 'o', 'o.id = u.organization_id AND o.is_active')
      .where('lower(u.email) = lower(:email)', { email: canonicalEmail(params.email) })
      .getOne();
    const password = params.password.slice(0, MAX_PASSWORD_LENGTH + 1);
    const hash = user?.passwordHash ?? (await (this.dummyHash ??= hashPassword('not a real password at all')));
    const valid = (await verifyPassword(password, hash)) && !!user?.passwordHash && user.isActive;
    const who = { ip: params.ip, requestId: params.requestId };

    if (!valid || !user) {
      this.deps.rateLimiter.recordFailure(params.ip);
      await audit.record(
        dataSource.manager,
        { userId: null, kind: ActorKind.SESSION, ...who },
        { action: AuditAction.LOGIN_FAILED, organizationId: user?.organizationId ?? null, targetUserId: user?.id ?? null },
      );
      throw new DomainError(LOGIN_FAILED_MESSAGE, 'UNAUTHENTICATED', { reason: 'INVALID_CREDENTIALS' });
    }

    const token = generateSessionToken();
    return dataSource.transaction(async (manager) => {
      const [{ expires_at: expiresAt }] = await manager.query(
        `INSERT INTO sessions (user_id, token_digest, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at`,
        [user.id, this.deps.keyCrypto.digest(token), this.deps.sessionTtlSeconds],
      );
      await audit.record(
        manager,
        { userId: user.id, kind: ActorKind.SESSION, ...who },
        { action: AuditAction.LOGIN_SUCCEEDED, organizationId: user.organizationId, targetUserId: user.id },
      );
      return { token, expiresAt, user };
    });
  }

  /** The owner of a live session token digest, if the user and organization are active. */
  async lookup(digest: Buffer): Promise<Authenticated | null> {
    const rows = await runPrepared<UserRow & { session_id: string; valid_for_ms: number }>(
      this.deps.dataSource,
      `SELECT ${USER_COLUMNS}, s.id AS session_id, (EXTRACT(EPOCH FROM s.expires_at - now()) * 1000)::float8 AS valid_for_ms
               FROM sessions s
               JOIN users u ON u.id = s.user_id
               JOIN organizations o ON o.id = u.organization_id
              WHERE s.token_digest = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.is_active AND o.is_active`,
      [digest],
    );
    const row = rows[0];
    if (!row) return null;
    return { principal: principalFrom(row, { kind: 'SESSION', sessionId: row.session_id }), validForMs: row.valid_for_ms };
  }

  async logout(actor: Actor): Promise<boolean> {
    const { sessionId } = actor.principal;
    if (!sessionId) {
      throw new BadInputError('logout ends a session; an access key is ended by regenerating it.');
    }
    await this.deps.dataSource.query(`UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, [sessionId]);
    this.deps.authCache.evictUser(actor.principal.userId);
    return true;
  }

  /** Ends the user's sessions, except the one making the request when it is given. */
  async revokeAll(manager: EntityManager, params: { userId: string; exceptSessionId?: string }): Promise<void> {
    await manager.query(
      `UPDATE sessions SET revoked_at = now()
        WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2::uuid)`,
      [params.userId, params.exceptSessionId ?? null],
    );
  }

  async changePassword(actor: Actor, params: { currentPassword: string; newPassword: string }): Promise<boolean> {
    const { userId, sessionId } = actor.principal;
    const user = await this.deps.dataSource
      .getRepository(User)
      .createQueryBuilder('u')
      .addSelect('u.passwordHash')
      .where('u.id = :userId', { userId })
      .getOneOrFail();
    if (!actor.ability.can('changePassword', user)) throw new ForbiddenError();
    if (!user.passwordHash) {
      throw new BadInputError('This user has no password: they authenticate with their access key only.', 'currentPassword');
    }
    if (!(await verifyPassword(params.currentPassword.slice(0, MAX_PASSWORD_LENGTH + 1), user.passwordHash))) {
      this.deps.rateLimiter.recordFailure(actor.ip);
      throw new BadInputError('The current password is incorrect.', 'currentPassword');
    }
    const passwordHash = await validPasswordHash(params.newPassword, 'newPassword');
    await this.deps.dataSource.transaction(async (manager) => {
      await manager.getRepository(User).update({ id: userId }, { passwordHash });
      // Whoever else knew the old password is signed out; the session changing it stays.
      await this.revokeAll(manager, { userId, exceptSessionId: sessionId });
      await this.deps.audit.record(manager, auditActorOf(actor), {
        action: AuditAction.PASSWORD_CHANGED,
        organizationId: user.organizationId,
        targetUserId: userId,
      });
    });
    this.deps.authCache.evictUser(userId);
    return true;
  }
}
