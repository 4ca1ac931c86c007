import type { DataSource, EntityManager } from 'typeorm';

import type { KeyCrypto } from '../access-keys/key-crypto';
import { generateSessionToken } from '../access-keys/key-format';
import { auditActorOf, type AuditService } from '../audit/audit.service';
import { ActorKind, AuditAction } from '../audit/audit-event.entity';
import type { AuthCache } from '../authentication/auth-cache';
import { hashPassword, isVerifiableHash, type PasswordHasher } from '../authentication/password';
import { type Authenticated, principalFrom } from '../authentication/principal';
import {
  type Authority,
  AuthorityEndedError,
  lockOrganizations,
  lockUsers,
  type PauseHooks,
  queueForAuthority,
} from '../authorization/authority';
import { runPrepared } from '../db/prepared';
import { oneOrAny } from '../db/scope';
import { BadInputError, ConflictError, DomainError, ForbiddenError } from '../errors';
import type { AuthRateLimiter } from '../rate-limiting/rate-limit';
import type { Actor } from '../request/actor';
import { User } from '../users/user.entity';
import { USER_COLUMNS, type UserRow } from '../users/user.queries';
import { checkNewPassword, signInEmail } from '../users/user.validation';

export interface LoginResult {
  token: string;
  expiresAt: Date;
  user: User;
}

const LOGIN_FAILED_MESSAGE = 'Email or password is incorrect.';

/** The owner of a session a reported token names (rows of sessions joined with users). */
export interface SessionOwner {
  readonly user_id: string;
  readonly organization_id: string;
}

/** A session ended because its token was reported leaked: which one, whose, and the digest it matched. */
export interface EndedSession {
  readonly sessionId: string;
  readonly userId: string;
  readonly organizationId: string;
  readonly tokenDigest: Buffer;
}

/** HTTP 429 (see app.ts): the address has no attempts left for now, or too many under way. */
function tooManyAttempts(retryAfterSeconds: number): DomainError {
  return new DomainError(
    `Too many failed authentications from this address: try again in ${retryAfterSeconds} s.`,
    'RATE_LIMITED',
    {
      retryAfterSeconds,
    },
  );
}

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
      authority: Authority;
      passwords: PasswordHasher;
      hooks: PauseHooks;
      sessionTtlSeconds: number;
    },
  ) {}

  /**
   * Signs a person in. The attempt is counted before the password is verified (AuthRateLimiter.reserve:
   * RATE_LIMITED at once when the address has none left); the verification runs outside any transaction,
   * then the session is created only if, under the locks of its insert's transaction, the organization is
   * still active and the user's row is the one verified against (active, the same hash, `updated_at`
   * unchanged: no deactivation, even one undone since, committed in between). Anything else is the same
   * answer as a wrong password, and counts as one.
   */
  async login(params: { email: string; password: string; ip: string; requestId: string }): Promise<LoginResult> {
    const { dataSource, audit, rateLimiter } = this.deps;
    const retryAfterSeconds = rateLimiter.reserve(params.ip);
    if (retryAfterSeconds > 0) throw tooManyAttempts(retryAfterSeconds);
    let failed = false;
    try {
      const { user, session } = await this.signIn(params);
      if (session) return session;
      failed = true;
      await audit.record(
        dataSource.manager,
        { userId: null, kind: ActorKind.SESSION, ip: params.ip, requestId: params.requestId },
        {
          action: AuditAction.LOGIN_FAILED,
          organizationId: user?.organizationId ?? null,
          targetUserId: user?.id ?? null,
        },
      );
      throw new DomainError(LOGIN_FAILED_MESSAGE, 'UNAUTHENTICATED', { reason: 'INVALID_CREDENTIALS' });
    } finally {
      rateLimiter.release(params.ip, { failed });
    }
  }

  private async signIn(params: {
    email: string;
    password: string;
    ip: string;
    requestId: string;
  }): Promise<{ user: User | null; session: LoginResult | null }> {
    const { dataSource, audit } = this.deps;
    const email = signInEmail(params.email);
    // The row's updated_at as PostgreSQL prints it (to the microsecond; a Date keeps milliseconds): the version of
    // the user that the password is verified against.
    const found =
      email === null
        ? null
        : await dataSource
            .getRepository(User)
            .createQueryBuilder('u')
            .addSelect('u.passwordHash')
            .addSelect('u.updated_at::text', 'verified_version')
            .innerJoin('organizations', 'o', 'o.id = u.organization_id AND o.is_active')
            .where('lower(u.email) = lower(:email)', { email })
            .getRawAndEntities<{ verified_version: string }>();
    const user = found?.entities[0] ?? null;
    const verifiedVersion = found?.raw[0]?.verified_version ?? null;
    // The password goes as it came: verification normalizes it (NFKC) and bounds its length itself.
    const { password } = params;
    // A user without a password, or with a hash no password can match (an operator's placeholder, a corrupted row),
    // is verified against the dummy hash as an unknown email is: the same time, and never a match.
    const ownHash = isVerifiableHash(user?.passwordHash) ? user!.passwordHash! : null;
    // Made once per process, outside the bound on hashing: a refusal there must not be remembered here.
    const verifiedHash = ownHash ?? (await (this.dummyHash ??= hashPassword('not a real password at all')));
    const matches = await this.deps.passwords.verify({ password, stored: verifiedHash, client: params.ip });
    if (!matches || ownHash === null || !user?.isActive) return { user, session: null };
    await this.deps.hooks.afterPasswordVerified?.(user.email);

    const token = generateSessionToken();
    const session = await dataSource.transaction(async (manager) => {
      // Locks in the order every act takes them (see Authority): a deactivation or password change is either
      // committed (and seen here) or waits until this session exists, and then ends it. Seen here means the row
      // is no longer the one verified (updated_at moved), even when a reactivation or the old password followed;
      // any other change of the user in that window (a new email, name or role) only asks for the sign-in again.
      await queueForAuthority(manager, { organizationIds: [user.organizationId], shared: [user.id], exclusive: [] });
      const active = await lockOrganizations(manager, { ids: [user.organizationId], lock: 'FOR KEY SHARE' });
      const [current] = await manager.query(
        `SELECT is_active, password_hash, updated_at = $2::timestamptz AS unchanged FROM users WHERE id = $1 FOR SHARE`,
        [user.id, verifiedVersion],
      );
      if (
        !active.has(user.organizationId) ||
        !current?.is_active ||
        current.password_hash !== verifiedHash ||
        current.unchanged !== true
      )
        return null;
      const [{ expires_at: expiresAt }] = await manager.query(
        `INSERT INTO sessions (user_id, token_digest, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at`,
        [user.id, this.deps.keyCrypto.digest(token), this.deps.sessionTtlSeconds],
      );
      await audit.record(
        manager,
        { userId: user.id, kind: ActorKind.SESSION, ip: params.ip, requestId: params.requestId },
        { action: AuditAction.LOGIN_SUCCEEDED, organizationId: user.organizationId, targetUserId: user.id },
      );
      return { token, expiresAt, user };
    });
    return { user, session };
  }

  /**
   * The owner of a live session token, by its digests under every secret of the keyring (a token is never
   * re-digested: it stays under the secret it was issued with until it expires), if the user and organization
   * are active. The session's end is compared with PostgreSQL's clock as the row is read (clock_timestamp()), and
   * `validForMs` measured from then: not from now(), the moment the statement's transaction began, before any wait
   * for a table lock (a migration's), during which the session may have ended.
   */
  async lookup(digests: readonly Buffer[]): Promise<Authenticated | null> {
    // One secret (no rotation under way): one digest, compared as a value (see oneOrAny).
    const { comparison: isDigest, value: digestValue } = oneOrAny('$1', digests);
    const rows = await runPrepared<UserRow & { session_id: string; valid_for_ms: number }>(
      this.deps.dataSource,
      `SELECT ${USER_COLUMNS}, s.id AS session_id, (EXTRACT(EPOCH FROM s.expires_at - clock_timestamp()) * 1000)::float8 AS valid_for_ms
               FROM sessions s
               JOIN users u ON u.id = s.user_id
               JOIN organizations o ON o.id = u.organization_id
              WHERE s.token_digest ${isDigest} AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp() AND u.is_active AND o.is_active`,
      [digestValue],
    );
    const row = rows[0];
    if (!row) return null;
    return {
      principal: principalFrom(row, { kind: 'SESSION', sessionId: row.session_id }),
      validForMs: row.valid_for_ms,
    };
  }

  /**
   * logout: ends the session that sent the request (revoked_at set; cached credentials evicted) and records
   * LOGGED_OUT (actor and target: the caller, actorKind SESSION, never the token) in the same transaction: if
   * the event cannot be written, the session is not ended. Locks in the one order of every act: first the user's
   * authority lock, shared (queueForAuthority: a sign-out queues behind a waiting deactivation), then (Authority's
   * RowLock) the organization row FOR KEY SHARE and the user's row FOR SHARE (as Authority's check, so a
   * deactivation is ordered against the sign-out), then the session row, by the UPDATE. Always true when it ended
   * the session.
   * @throws BadInputError when the request came with an access key, not a session.
   * @throws AuthorityEndedError (UNAUTHENTICATED) when the session was ended meanwhile (another sign-out of it
   *   racing this one, a password change elsewhere, a deactivation, a leak report) or its user or organization
   *   is inactive as locked (a deactivation by SQL ends no session): nothing is written, as for
   *   a request sent with the token after that end committed.
   */
  async logout(actor: Actor): Promise<boolean> {
    const { sessionId, userId, organizationId } = actor.principal;
    if (!sessionId) {
      throw new BadInputError('logout ends a session; an access key is ended by regenerating it.');
    }
    const ended = await this.deps.dataSource.transaction(async (manager) => {
      // Queued as any act of the user (queueForAuthority): a stream of sign-outs must not keep taking the user's
      // row FOR SHARE past a deactivation or password change that waits for it.
      await queueForAuthority(manager, { organizationIds: [organizationId], shared: [userId], exclusive: [] });
      const active = await lockOrganizations(manager, { ids: [organizationId], lock: 'FOR KEY SHARE' });
      const users = await lockUsers(manager, {
        ids: [userId],
        organizationIds: [organizationId],
        // FOR SHARE, as any act's check: a deactivation of the user waits for this sign-out, or committed first.
        lock: 'FOR SHARE',
      });
      // As any act: a user or organization deactivated since the request was authenticated (by SQL, which ends
      // no session) signs out nothing and records nothing, as the token sent after that commit would.
      if (!active.has(organizationId) || !users.get(userId)?.isActive) return false;
      const endedIds = await this.end(manager, { sessionIds: [sessionId] });
      if (endedIds.length === 0) return false;
      await this.deps.audit.record(manager, auditActorOf(actor), {
        action: AuditAction.LOGGED_OUT,
        organizationId,
        targetUserId: userId,
      });
      return true;
    });
    this.deps.authCache.evictUser(userId);
    if (!ended) throw new AuthorityEndedError('SESSION');
    return true;
  }

  /**
   * The one way a single session ends (sign-out, a reported leak): `revoked_at` set, in the caller's
   * transaction. The sessions trigger announces it to every instance at commit (their caches evict the user);
   * the caller evicts this instance's cache (AuthCache.evictUser) once it committed. Requests in flight with
   * the token are refused at their next act: Authority's check locks the session row FOR SHARE and reads
   * `revoked_at`. Sessions already ended are left as they are (an UPDATE waiting for another's end of the row
   * reads it again once that commits, and leaves it). Returns the ids of the sessions this call ended.
   */
  async end(manager: EntityManager, params: { sessionIds: readonly string[] }): Promise<string[]> {
    // An UPDATE answers [rows, row count] through TypeORM's query.
    const [rows]: [Array<{ id: string }>, number] = await manager.query(
      `UPDATE sessions SET revoked_at = now() WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL RETURNING id`,
      [[...params.sessionIds]],
    );
    return rows.map((row) => row.id);
  }

  /**
   * The users (with their organizations) who own a session, not ended and not expired, whose token digest is
   * one of `digests` (under every secret of the keyring, as `lookup` matches them), of `organizationId` when
   * given: read without locks, so a leak report knows whom to lock before it looks again (endReported). A user
   * or organization that is inactive still counts: its session is not ended, and would work again on
   * reactivation.
   */
  ownersOfTokens(
    manager: EntityManager,
    params: { digests: readonly Buffer[]; organizationId: string | null },
  ): Promise<SessionOwner[]> {
    return manager.query(
      `SELECT DISTINCT s.user_id, u.organization_id
         FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_digest = ANY($1::bytea[]) AND s.revoked_at IS NULL AND s.expires_at > now()
          AND ($2::uuid IS NULL OR u.organization_id = $2::uuid)
        ORDER BY s.user_id`,
      [[...params.digests], params.organizationId],
    );
  }

  /**
   * Ends, in the caller's transaction, every session of `userIds` whose token digest is one of `digests` and
   * that is not ended and not expired (see `end`); returns them. The caller holds the owners' organization
   * and users rows already (the lock order of every act: LeakReportService.revoke); the sessions rows are
   * locked here FOR NO KEY UPDATE, by id, and matched again under the lock, so a sign-out that committed
   * meanwhile is seen and its session left alone; so is an expiry passed meanwhile (clock_timestamp(), not the
   * transaction's now()).
   */
  async endReported(
    manager: EntityManager,
    params: { digests: readonly Buffer[]; userIds: readonly string[] },
  ): Promise<EndedSession[]> {
    const rows: Array<{ id: string; user_id: string; organization_id: string; token_digest: Buffer }> =
      await manager.query(
        `SELECT s.id, s.user_id, u.organization_id, s.token_digest
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.token_digest = ANY($1::bytea[]) AND s.user_id = ANY($2::uuid[])
            AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
          ORDER BY s.id FOR NO KEY UPDATE OF s`,
        [[...params.digests], [...params.userIds]],
      );
    await this.end(manager, { sessionIds: rows.map((row) => row.id) });
    return rows.map((row) => ({
      sessionId: row.id,
      userId: row.user_id,
      organizationId: row.organization_id,
      tokenDigest: row.token_digest,
    }));
  }

  /** Ends every session of the user (a deactivation). */
  async revokeAll(manager: EntityManager, params: { userId: string }): Promise<void> {
    await manager.query(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, [
      params.userId,
    ]);
  }

  /**
   * Changes the caller's own password and ends their other sessions. The current password is verified (an
   * attempt counted before it runs, like a sign-in) and the new one hashed outside the transaction; inside
   * it the caller's authority is confirmed, the stored hash must still be the one verified (else CONFLICT),
   * and every other session ends in the same commit, including one a concurrent sign-in created meanwhile (the
   * database ends them when `password_hash` changes, whoever changes it: migration PasswordChangeEndsSessions).
   */
  async changePassword(actor: Actor, params: { currentPassword: string; newPassword: string }): Promise<boolean> {
    const { userId, sessionId } = actor.principal;
    const { authority, rateLimiter } = this.deps;
    authority.throwIfRefused(actor);
    const user = await this.deps.dataSource
      .getRepository(User)
      .createQueryBuilder('u')
      .addSelect('u.passwordHash')
      .where('u.id = :userId', { userId })
      .getOneOrFail();
    if (!actor.ability.can('changePassword', user)) throw new ForbiddenError();
    const verifiedHash = user.passwordHash;
    if (!verifiedHash) {
      throw new BadInputError(
        'This user has no password: they authenticate with their access key only.',
        'currentPassword',
      );
    }
    checkNewPassword(params.newPassword, 'newPassword');
    const retryAfterSeconds = rateLimiter.reserve(actor.ip);
    if (retryAfterSeconds > 0) throw tooManyAttempts(retryAfterSeconds);
    let failed = false;
    try {
      const password = params.currentPassword; // as it came: verification normalizes and bounds it
      failed = !(await this.deps.passwords.verify({ password, stored: verifiedHash, client: actor.ip }));
    } finally {
      rateLimiter.release(actor.ip, { failed });
    }
    if (failed) throw new BadInputError('The current password is incorrect.', 'currentPassword');
    const passwordHash = await this.deps.passwords.hash(params.newPassword, actor.ip);
    await this.deps.hooks.afterPasswordVerified?.(user.email);

    await this.deps.dataSource.transaction(async (manager) => {
      const act = await authority.confirm(manager, { actor, targetIds: [userId] });
      act.authorize((ability) => {
        if (!ability.can('changePassword', act.users.get(userId)!)) throw new ForbiddenError();
      });
      const [current] = await manager.query(`SELECT password_hash FROM users WHERE id = $1`, [userId]);
      if (current.password_hash !== verifiedHash) {
        throw new ConflictError('The password was changed meanwhile: sign in with the new one and try again.');
      }
      // Whoever else knew the old password is signed out; the session changing it stays. The database ends the
      // others in the UPDATE itself (migration PasswordChangeEndsSessions: so does a reset by SQL), after the row
      // lock above, so also a session a concurrent sign-in committed before it; this transaction's setting names
      // the session to keep.
      await manager.query(`SELECT set_config('crm_access.session_kept', $1, true)`, [sessionId ?? '']);
      await manager.query(`UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1`, [
        userId,
        passwordHash,
      ]);
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
