import { subject } from '@casl/ability';
import type { DataSource, EntityManager } from 'typeorm';

import { type AuditActor, auditActorOf, type AuditService } from '../audit/audit.service';
import { AuditAction } from '../audit/audit-event.entity';
import type { AuthCache } from '../authentication/auth-cache';
import type { AppAbility } from '../authorization/abilities';
import {
  type Authority,
  lockOrganizations,
  lockUsers,
  queueForAuthority,
  sortedUnique,
} from '../authorization/authority';
import { redactCredentials } from '../credential-shape';
import { BadInputError, ForbiddenError } from '../errors';
import { refuseHiddenCharacters, replaceHiddenCharacters } from '../graphql/text-checks';
import type { Actor } from '../request/context';
import type { Loaders } from '../request/loaders';
import type { User } from '../users/user.entity';
import { USER_COLUMNS, userFromRow, type UserRow } from '../users/user.queries';
import type { AccessKeyService } from './access-key.service';
import { type Clock, expiryMs, serviceClockAtRow, systemClock } from './clock';
import type { KeyCrypto } from './key-crypto';
import { isWellFormedAccessKey, isWellFormedSessionToken, keyHint } from './key-format';
import { LeakReportSource } from './leak-report.types';

/**
 * Longest location kept (a URL, a place), in code points: an admin's longer location is refused, GitHub's
 * is cut, with an ellipsis.
 */
export const MAX_LEAK_LOCATION_LENGTH = 2000;

/** One reported token and where it was found. */
export interface LeakedToken {
  readonly token: string;
  readonly location: string;
}

/** Who reported, as the audit log records it, and where the report came from. */
export interface LeakReport {
  readonly tokens: readonly LeakedToken[];
  readonly source: LeakReportSource;
  readonly reporter: AuditActor;
  /** Only keys of this organization are looked at (an admin's report); all keys when absent (GitHub's). */
  readonly organizationId?: string;
}

/** A user whose key or session was reported, and their organization (rows of access_keys, or of sessions). */
interface CredentialOwner {
  readonly user_id: string;
  readonly organization_id: string;
}

/** A key revoked, or a session ended, because its token was reported. */
export interface RevokedCredential {
  readonly token: string;
  readonly userId: string;
  readonly organizationId: string;
}

/**
 * What a leak report needs of the sessions: SessionService (src/sessions/) provides it. An interface here, so
 * that access-keys/ does not import sessions/, which imports access-keys/.
 */
export interface ReportedSessions {
  /** See SessionService.ownersOfTokens: unlocked, whom to lock. */
  ownersOfTokens(
    manager: EntityManager,
    params: { digests: readonly Buffer[]; organizationId: string | null },
  ): Promise<CredentialOwner[]>;
  /** See SessionService.endReported: under the owners' locks, ends the sessions and says which. */
  endReported(
    manager: EntityManager,
    params: { digests: readonly Buffer[]; userIds: readonly string[] },
  ): Promise<Array<{ userId: string; organizationId: string; tokenDigest: Buffer }>>;
}

/**
 * A location as stored and shown: anything shaped like a key or session token (the reported key, a live one
 * pasted beside it) replaced by `[redacted]` (redactCredentials), hidden characters (controls, NUL, invisible
 * and direction characters, unpaired surrogates) replaced by U+FFFD, cut to MAX_LEAK_LOCATION_LENGTH code
 * points (no surrogate pair is split) with an ellipsis. GitHub's message cannot be refused for its URL: the leaked key must still go.
 */
export function storableLocation(location: string): string {
  const characters = [...redactCredentials(replaceHiddenCharacters(location))];
  return characters.length <= MAX_LEAK_LOCATION_LENGTH
    ? characters.join('')
    : characters.slice(0, MAX_LEAK_LOCATION_LENGTH - 1).join('') + '…';
}

/**
 * Whether a row's current key works, by the service's clock (`clock`: serviceClockAtRow): not past its expiry,
 * compared in whole milliseconds as authentication does (expiryMs).
 */
function currentKeyWorks(clock: string): string {
  return `(expires_at IS NULL OR ${expiryMs('expires_at')} > ${clock})`;
}

/**
 * Whether a row's replaced key works: its grace period has not ended, by PostgreSQL's clock as the row is read
 * (clock_timestamp(), not now(), the start of a transaction that may have waited for the owners' locks while it
 * ended: such a key no longer works, and revoking it would replace the key its integrations have switched to,
 * test/access-keys/leak-report-ended-while-waiting.test.ts), and it is not past its own expiry, by the service's
 * clock (`clock`), as authentication judges it.
 */
function previousKeyWorks(clock: string): string {
  return `(previous_key_expires_at > clock_timestamp()
    AND (previous_key_own_expires_at IS NULL OR ${expiryMs('previous_key_own_expires_at')} > ${clock}))`;
}

/**
 * Rows of organization $2 (null: any) whose current key is one of $1 (digests) and works, or whose replaced key
 * is and works (`clock`: the service's clock, serviceClockAtRow). A key that works nowhere (expired, or its grace
 * period ended) is not revoked: revoking gives its user a new key and records a leak, for a report that is a
 * false positive (test/access-keys/leak-report-expired-key.test.ts).
 */
function reportedKeyRows(clock: string): string {
  return `((key_digest = ANY($1::bytea[]) AND ${currentKeyWorks(clock)})
       OR (previous_key_digest = ANY($1::bytea[]) AND ${previousKeyWorks(clock)}))
  AND ($2::uuid IS NULL OR organization_id = $2::uuid)`;
}

/** ownersOf's statement: `$1` digests, `$2` organization (null: any), `$3` the service's clock. */
const REPORTED_KEY_OWNERS = `SELECT user_id, organization_id FROM access_keys
  WHERE ${reportedKeyRows(serviceClockAtRow('$3'))} ORDER BY user_id`;

const CLOCK_AT_LOCKED_ROW = serviceClockAtRow('$4');
/**
 * revokeKeys' statement: `$1` digests, `$2` organization (null: any), `$3` the owners' user ids, `$4` the
 * service's clock. Each digest comes back only while its key works (null otherwise), judged as the row is locked.
 */
const LOCK_REPORTED_KEYS = `SELECT user_id, organization_id,
       CASE WHEN ${currentKeyWorks(CLOCK_AT_LOCKED_ROW)} THEN key_digest END AS key_digest,
       CASE WHEN ${previousKeyWorks(CLOCK_AT_LOCKED_ROW)} THEN previous_key_digest END AS previous_key_digest
  FROM access_keys
 WHERE ${reportedKeyRows(CLOCK_AT_LOCKED_ROW)} AND user_id = ANY($3::uuid[])
 ORDER BY user_id FOR UPDATE`;

/** An audit row with `location` ($8: ACCESS_KEY_LEAK_REPORTED or SESSION_TOKEN_LEAK_REPORTED). */
const INSERT_LEAK_AUDIT_ROW = `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, target_user_id, ip, request_id, location)
  VALUES ($1, $8, $2, $3, $4, $5, $6, $7)`;

/** Each reported token under every digest it may be stored under (every secret of the keyring), by digest. */
function byDigest(
  tokens: readonly LeakedToken[],
  params: { keyCrypto: KeyCrypto; isWellFormed: (token: string) => boolean },
): Map<string, LeakedToken> {
  const found = new Map<string, LeakedToken>();
  for (const leaked of tokens) {
    if (!params.isWellFormed(leaked.token)) continue;
    // Under every secret of the keyring: during a rotation a key or token may still be under an older one.
    for (const digest of params.keyCrypto.digests(leaked.token).map((bytes) => bytes.toString('base64'))) {
      if (!found.has(digest)) found.set(digest, leaked);
    }
  }
  return found;
}

const digestsOf = (found: ReadonlyMap<string, LeakedToken>): Buffer[] =>
  [...found.keys()].map((digest) => Buffer.from(digest, 'base64'));

/**
 * Leaked keys, revoked on report (issue 18). A reported key that is a user's current key, or the key a grace
 * period keeps working, is replaced through the regeneration path (AccessKeyService.issue, no grace), so the
 * old key and any grace-period key stop working on every instance: the access_keys trigger NOTIFYs the
 * change at commit, this instance evicts its own cache at once, and requests in flight with the old key are
 * refused at their next act (Authority checks the key digest under a lock). The report is audited as
 * ACCESS_KEY_LEAK_REPORTED (with where the key was found, never the key) followed by ACCESS_KEY_REGENERATED,
 * and kept on the key row for the user's profile. The new key is not revealed here: admins read it on the
 * profile, as after any regeneration.
 *
 * A reported session token (`cas_…`) that is a session not ended and not expired is ended through the
 * sessions' own path (SessionService.end, as a sign-out), in the same transaction: the sessions trigger
 * NOTIFYs it, this instance evicts its cache, and requests in flight with the token are refused at their next
 * act (Authority locks the session row and reads `revoked_at`). Audited as SESSION_TOKEN_LEAK_REPORTED, with
 * the location. A session of an inactive user or organization is ended too, as a key of a deactivated user is
 * revoked: reactivation must not bring a leaked credential back.
 */
export class LeakReportService {
  constructor(
    private readonly deps: {
      dataSource: DataSource;
      accessKeys: AccessKeyService;
      audit: AuditService;
      authority: Authority;
      authCache: AuthCache;
      keyCrypto: KeyCrypto;
      sessions: ReportedSessions;
      /** What key expiry is decided by (as authentication's); the system clock by default. */
      clock?: Clock;
    },
  ) {}

  /** The service's clock now, for a statement's parameter. */
  private now(): Date {
    return new Date((this.deps.clock ?? systemClock).now());
  }

  /**
   * The users (with their organizations) whose current or grace-period key has one of `digests`, of
   * `organizationId` when given, read without locks: whom an act must lock before it looks again under them.
   */
  private ownersOf(
    manager: EntityManager,
    params: { digests: readonly Buffer[]; organizationId: string | null },
  ): Promise<CredentialOwner[]> {
    return manager.query(REPORTED_KEY_OWNERS, [params.digests, params.organizationId, this.now()]);
  }

  /**
   * Revokes, in the caller's transaction, every reported token that is a current or grace-period key, and
   * ends every reported session token of a session not ended and not expired (of `organizationId` when
   * given). Tokens that are neither, not found, already replaced or ended, or of another organization are
   * skipped without a trace. Call `forgetRevoked` after the transaction commits.
   * Locks in the one order of every act (Authority's RowLock): the owners' organizations FOR KEY SHARE, their
   * users rows FOR NO KEY UPDATE (owners of keys and of sessions together, one statement), then their key rows
   * FOR UPDATE, then their sessions rows FOR NO KEY UPDATE, each in one statement by id; keys and sessions are
   * matched again under those locks, so a regeneration or sign-out that committed meanwhile is seen. (Locking
   * key rows first deadlocked with an admin's act that holds its own key row, then writes the reported user's.)
   * The organization lock is the one reportLeakedAccessKey's check took before it: anything stronger (FOR
   * SHARE) is an upgrade that waits for a role change or deactivation which took FOR NO KEY UPDATE past the
   * check's KEY SHARE and waits for the users rows this report holds: a deadlock
   * (test/access-keys/leak-report-locks.test.ts).
   */
  async revoke(manager: EntityManager, report: LeakReport): Promise<RevokedCredential[]> {
    const { keyCrypto, sessions } = this.deps;
    const keys = byDigest(report.tokens, { keyCrypto, isWellFormed: isWellFormedAccessKey });
    const tokens = byDigest(report.tokens, { keyCrypto, isWellFormed: isWellFormedSessionToken });
    const organizationId = report.organizationId ?? null;
    const keyOwners = keys.size > 0 ? await this.ownersOf(manager, { digests: digestsOf(keys), organizationId }) : [];
    const sessionOwners =
      tokens.size > 0 ? await sessions.ownersOfTokens(manager, { digests: digestsOf(tokens), organizationId }) : [];
    const owners = [...keyOwners, ...sessionOwners];
    if (owners.length === 0) return [];
    const organizationIds = sortedUnique(owners.map((owner) => owner.organization_id));
    // Exclusive: the report ends the owners' credentials; their requests that come later queue behind it.
    await queueForAuthority(manager, {
      organizationIds,
      shared: [],
      exclusive: owners.map((owner) => owner.user_id),
      keysReplaced: keyOwners.map((owner) => ({ userId: owner.user_id, organizationId: owner.organization_id })),
    });
    await lockOrganizations(manager, { ids: organizationIds, lock: 'FOR KEY SHARE' });
    await lockUsers(manager, {
      ids: sortedUnique(owners.map((owner) => owner.user_id)),
      organizationIds,
      lock: 'FOR NO KEY UPDATE',
    });
    const revoked: RevokedCredential[] = [];
    if (keyOwners.length > 0) {
      revoked.push(
        ...(await this.revokeKeys(manager, {
          report,
          keys,
          userIds: sortedUnique(keyOwners.map((owner) => owner.user_id)),
        })),
      );
    }
    if (sessionOwners.length > 0) {
      const ended = await sessions.endReported(manager, {
        digests: digestsOf(tokens),
        userIds: sortedUnique(sessionOwners.map((owner) => owner.user_id)),
      });
      for (const session of ended) {
        const leaked = tokens.get(session.tokenDigest.toString('base64'))!;
        await this.recordLeak(manager, {
          report,
          action: AuditAction.SESSION_TOKEN_LEAK_REPORTED,
          owner: { user_id: session.userId, organization_id: session.organizationId },
          location: storableLocation(leaked.location),
        });
        revoked.push({ token: leaked.token, userId: session.userId, organizationId: session.organizationId });
      }
    }
    return revoked;
  }

  /** The key half of `revoke`, with the owners' organizations and users rows locked already. */
  private async revokeKeys(
    manager: EntityManager,
    params: { report: LeakReport; keys: ReadonlyMap<string, LeakedToken>; userIds: readonly string[] },
  ): Promise<RevokedCredential[]> {
    const { report, keys } = params;
    const rows: Array<{
      user_id: string;
      organization_id: string;
      key_digest: Buffer | null;
      previous_key_digest: Buffer | null;
    }> = await manager.query(LOCK_REPORTED_KEYS, [
      digestsOf(keys),
      report.organizationId ?? null,
      [...params.userIds],
      this.now(),
    ]);
    const revoked: RevokedCredential[] = [];
    for (const row of rows) {
      const matched = [row.key_digest, row.previous_key_digest]
        .filter((digest): digest is Buffer => digest !== null)
        .flatMap((digest) => keys.get(digest.toString('base64')) ?? []);
      const leaked = matched[0];
      if (!leaked) continue;
      await this.deps.accessKeys.issue(manager, {
        userId: row.user_id,
        organizationId: row.organization_id,
        createdBy: report.reporter.userId,
        gracePeriodSeconds: 0,
      });
      const location = storableLocation(leaked.location);
      await manager.query(
        `UPDATE access_keys SET leak_reported_at = now(), leak_report_location = $2, leak_report_source = $3, leaked_key_hint = $4
          WHERE user_id = $1`,
        [row.user_id, location, report.source, keyHint(leaked.token)],
      );
      await this.recordLeak(manager, { report, action: AuditAction.ACCESS_KEY_LEAK_REPORTED, owner: row, location });
      await this.deps.audit.record(manager, report.reporter, {
        action: AuditAction.ACCESS_KEY_REGENERATED,
        organizationId: row.organization_id,
        targetUserId: row.user_id,
      });
      for (const token of matched)
        revoked.push({ token: token.token, userId: row.user_id, organizationId: row.organization_id });
    }
    return revoked;
  }

  /** The report's audit row for one owner: who reported, whose credential, where it was found (never the token). */
  private async recordLeak(
    manager: EntityManager,
    params: { report: LeakReport; action: AuditAction; owner: CredentialOwner; location: string },
  ): Promise<void> {
    const { reporter } = params.report;
    await manager.query(INSERT_LEAK_AUDIT_ROW, [
      params.owner.organization_id,
      reporter.userId,
      reporter.kind,
      params.owner.user_id,
      reporter.ip,
      reporter.requestId,
      params.location,
      params.action,
    ]);
  }

  /** After the revocation committed: this instance forgets the users' cached keys now; the others on NOTIFY. */
  forgetRevoked(revoked: readonly RevokedCredential[]): void {
    for (const key of revoked) this.deps.authCache.evictUser(key.userId);
  }

  /**
   * reportLeakedAccessKey: an admin reports a key found somewhere (`location`, 1 to MAX_LEAK_LOCATION_LENGTH
   * characters after trimming, none of them hidden: see refuseHiddenCharacters). A
   * current or grace-period key of the admin's organization is revoked and audited; a session token (`cas_…`)
   * of a session of the organization, not ended and not expired, ends that session (audited as
   * SESSION_TOKEN_LEAK_REPORTED). A key or token of another organization and an unknown one are not looked at,
   * and get the same answer (`revoked: false`).
   * Throws FORBIDDEN for a caller who may not regenerate keys of the organization (anyone but an ADMIN),
   * BAD_USER_INPUT for a string that is shaped like neither a key nor a session token (checksum included), or a location that is
   * empty, too long or holds hidden characters,
   * and the refusals of Authority.confirm (the caller's authority is checked at the moment of the act).
   */
  async reportByAdmin(
    actor: Actor,
    params: { key: string; location: string },
    loaders?: Pick<Loaders, 'keyChanged'>,
  ): Promise<{ revoked: boolean; user: User | null }> {
    const { organizationId } = actor.principal;
    const mayReport = (ability: AppAbility) => {
      if (!ability.can('regenerateAccessKey', subject('User', { organizationId }))) {
        throw new ForbiddenError('Only admins of the organization can report a leaked access key.');
      }
    };
    mayReport(actor.ability);
    this.deps.authority.throwIfRefused(actor);
    const key = params.key.trim();
    const isKey = isWellFormedAccessKey(key);
    if (!isKey && !isWellFormedSessionToken(key)) {
      throw new BadInputError(
        'This is not an access key or a session token: check that no characters were lost or added when copying it (it starts with cak_ or cas_ and is 42 characters long).',
        'key',
      );
    }
    const location = params.location.trim();
    if (!location) throw new BadInputError('Say where the key was found (a URL, a file, a place).', 'location');
    refuseHiddenCharacters(location, { field: 'location', what: 'The location' });
    if ([...location].length > MAX_LEAK_LOCATION_LENGTH) {
      throw new BadInputError(`The location must be at most ${MAX_LEAK_LOCATION_LENGTH} characters.`, 'location');
    }
    const outcome = await this.deps.dataSource.transaction(async (manager) => {
      // The key's owner is locked with the actor, in the act's one statement: the lock order of every act.
      // Under every secret of the keyring, as revoke() matches it: during a rotation the key may be under an older one.
      const digests = this.deps.keyCrypto.digests(key);
      const owners = isKey
        ? await this.ownersOf(manager, { digests, organizationId })
        : await this.deps.sessions.ownersOfTokens(manager, { digests, organizationId });
      const targetIds = owners.map((owner) => owner.user_id);
      // Reporting a key regenerates it: a replaced key may not (ReplacedKeyError).
      (await this.deps.authority.confirm(manager, { actor, targetIds, handlesKeys: isKey })).authorize(mayReport);
      const revoked = await this.revoke(manager, {
        tokens: [{ token: key, location }],
        source: LeakReportSource.ADMIN,
        reporter: auditActorOf(actor),
        organizationId,
      });
      if (revoked.length === 0) return { revoked, user: null };
      const [row]: UserRow[] = await manager.query(`SELECT ${USER_COLUMNS} FROM users u WHERE u.id = $1`, [
        revoked[0].userId,
      ]);
      return { revoked, user: userFromRow(row) };
    });
    this.forgetRevoked(outcome.revoked);
    // The revoked key may have been read earlier in this request: its later reads (the payload's `user { accessKey
    // accessKeyInfo }`) show the key that replaced it and the report, never the revoked key (Loaders.keyChanged).
    if (isKey) for (const { userId } of outcome.revoked) loaders?.keyChanged(userId);
    return { revoked: outcome.revoked.length > 0, user: outcome.user };
  }
}
