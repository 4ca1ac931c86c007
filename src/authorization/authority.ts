import type { DataSource, EntityManager } from 'typeorm';

import { type Clock, systemClock } from '../access-keys/clock';
import { ENCRYPTION_ID_BYTES } from '../access-keys/key-crypto';
import { AuditAction } from '../audit/audit-event.entity';
import type { KeyViewRow, ReplacedKeys } from '../audit/audit-rows';
import type { AuthCache } from '../authentication/auth-cache';
import type { PrincipalKind } from '../authentication/principal';
import { integerArrayLiteral, uuidArrayLiteral } from '../db/array-literal';
import { runPreparedIn, runPreparedOnConnection } from '../db/prepared';
import { DomainError, ForbiddenError } from '../errors';
import type { Actor } from '../request/actor';
import type { User } from '../users/user.entity';
import { USER_COLUMNS, userFromRow, type UserRow } from '../users/user.queries';
import { type AppAbility, defineAbilityFor } from './abilities';

/**
 * Test-only pauses, awaited at fixed points so a test can hold a race window open and let another request
 * commit inside it. Production wiring leaves them all unset.
 */
export interface PauseHooks {
  /** Inside an act's transaction, before the authority check takes its first lock. */
  beforeAuthorityCheck?(actor: Actor): Promise<void>;
  /** Inside an act's transaction, with the check's locks held, before the act itself. */
  afterAuthorityCheck?(actor: Actor): Promise<void>;
  /** After a sign-in or a password change verified a password, before the transaction that relies on it. */
  afterPasswordVerified?(email: string): Promise<void>;
  /** While a password verification, or a request's hash of a new password, for `client` holds its places in the bounds on hashing. */
  duringPasswordCheck?(client: string): Promise<void>;
}

/** The same answer authentication gives a key that does not work: nothing is learned about why. */
export const CREDENTIALS_ENDED =
  'The credentials are not valid: the key may have been replaced or expired, or its user deactivated.';
/**
 * The same answer authentication gives a well-formed session token that does not work. The client knows it sent a
 * token, so naming the kind tells it nothing new; the key's sentence ("the key may have been replaced") sent people
 * who had signed in after a key.
 */
export const SESSION_ENDED =
  'The session is not valid: it was signed out, expired, ended by a password change or reported as leaked, or its user or organization was deactivated. Sign in again.';

/**
 * The caller's authority ended (deactivated, key replaced, signed out) before this act: UNAUTHENTICATED, with the
 * sentence authentication gives the same credential (`kind`: the principal's) from then on.
 */
export class AuthorityEndedError extends DomainError {
  constructor(kind: PrincipalKind) {
    super(kind === 'SESSION' ? SESSION_ENDED : CREDENTIALS_ENDED, 'UNAUTHENTICATED', { reason: 'INVALID_CREDENTIALS' });
  }
}

/**
 * The request's key was replaced by a regeneration and is only in its grace period: it keeps reading for its
 * integrations, but it may not reveal, issue or regenerate any key (a replaced credential mints no new ones).
 * FORBIDDEN, not remembered for the request: the request's other acts are judged on their own.
 */
export class ReplacedKeyError extends ForbiddenError {
  constructor() {
    super(
      'This access key was replaced and works only until its grace period ends: it cannot reveal, create or regenerate keys. Use the new key.',
    );
  }
}

/** The caller's role changed while the request ran and the new one may not do this: FORBIDDEN. */
export class RoleChangedError extends ForbiddenError {
  constructor() {
    super('Your role changed while this request ran and no longer allows this.');
  }
}

/**
 * Row locks, always taken in this order by every act, sign-in and reveal, so concurrent acts cannot
 * deadlock, and only after the users' authority locks (queueForAuthority), which come before them all: the
 * organization row first, then users rows (one statement, by id), then credential rows
 * (access_keys, sessions), then whatever the act changes. Work that is no act keeps to it too: a leak report
 * (LeakReportService.revoke) locks organizations, users, then key rows; the batched write of key uses
 * (AccessKeyService.flushUse) locks only key rows, by user id; so does a key policy applied to existing keys.
 * A statement that writes several key rows locks them by user id first. An act's own key rows are not in user
 * id order (its actor's at the check, then the ones it writes), so a secret rotation, which takes key rows FOR
 * UPDATE, never waits for one while it holds another: its batches skip rows held and its second pass waits
 * for those one row per transaction (secret-rotation.ts, lockRows).
 * A batch of key views locks its targets' key rows FOR SHARE too, so no regeneration commits between the key
 * it shows and its view: with the actors' key rows, in one statement by user id (INSERT_IF_CONFIRMED, or
 * confirmEach in the fallback's transaction).
 *
 * The organization row is locked FOR KEY SHARE by acts, sign-ins, reveals and leak reports, FOR NO KEY UPDATE
 * by the acts that can remove an admin: those serialize among themselves and make nobody else wait. Deactivating
 * the organization takes FOR UPDATE (an UPDATE of `is_active`, which a unique index covers: see the migration
 * OrganizationActiveKey), which conflicts with them all; so does a key policy applied to existing keys, first
 * (Act.organizationLock). An act never asks later for a stronger organization
 * lock than its check took: a role change that got FOR NO KEY UPDATE past the check's KEY SHARE waits for the
 * act's users rows, and the upgrade would wait for it (a deadlock, test/access-keys/leak-report-locks.test.ts).
 */
export type RowLock = 'FOR KEY SHARE' | 'FOR SHARE' | 'FOR NO KEY UPDATE' | 'FOR UPDATE';

/**
 * The key spaces (the first key of PostgreSQL's two-key advisory locks) of the authority locks
 * (queueForAuthority): organizations', users' and users' keys'. The migrations and retention locks are one-key
 * (bigint) advisory locks, a key space of their own in pg_locks (objsubid 1, these 2).
 */
export const ORGANIZATION_AUTHORITY_LOCK_SPACE = 1_635_087_463;
export const AUTHORITY_LOCK_SPACE = 1_635_087_464;
export const KEY_AUTHORITY_LOCK_SPACE = 1_635_087_465;

/**
 * The key of a user's key lock, in SQL (`userId`, `organizationId`: uuid expressions): one of 16 per
 * organization (the organization id's hashtext with the user id's hashtext's low 4 bits in its own), so that a
 * batch of key views, which may show thousands of keys, takes at most 16 places of the lock table per
 * organization (see queueForAuthority). The keys of one lock queue together, which is only slower.
 */
function keyLockKey(userId: string, organizationId: string): string {
  return `(hashtext(${organizationId}::text) # (hashtext(${userId}::text) & 15))`;
}

/** A user whose key a work shows or replaces, with the organization it belongs to. */
export interface KeyOwner {
  readonly userId: string;
  readonly organizationId: string;
}

/**
 * The authority locks, in a fair queue, before any row lock of an act, sign-in, sign-out, reveal or leak report:
 * the organizations' first, then the users'.
 * - Users: `shared` for the users whose authority the work relies on (its actors), `exclusive` for those whose
 *   authority it ends or changes (an act's targets: deactivation, role change, key regeneration, password change,
 *   an edit; a leak report's owners).
 * - Organizations (`organizationIds`, the organizations of those users): shared, or exclusive with
 *   `changesOrganization` for the work that ends authority across an organization at once (a key policy: its
 *   organization row FOR UPDATE, Act.organizationLock).
 * - Users' keys (keyLockKey: 16 locks per organization, each for the keys of about a sixteenth of its users):
 *   shared for the keys a reveal shows (`keysShown`), exclusive for the keys a work replaces (`keysReplaced`: a
 *   regeneration, a leak report).
 *
 * PostgreSQL's row locks are not fair to a writer that waits: while a transaction holds a row FOR SHARE and a
 * deactivation's UPDATE waits for it, a new FOR SHARE of the row is granted at once, so a stream of overlapping
 * requests of one user (a stolen key, flooding) kept its own revocation waiting until the statement timeout, every
 * time; and a stream of any members' acts, each holding the organization row FOR KEY SHARE, so kept a key policy
 * waiting. Advisory locks are heavyweight locks, which PostgreSQL grants in the order asked: a request that
 * comes after a waiting revocation waits behind it, and then its check reads the revocation as committed
 * (test/auth/fair-revocation.test.ts).
 * So too for a key: a regeneration waits for the reveals of the key in flight (each holds the key row FOR SHARE),
 * and the reveals of it by other admins (on other instances: one instance commits an organization's reveals one
 * batch at a time) kept it waiting the same way.
 * Transaction-scoped; one statement, each lock once (the stronger mode when it is asked in both), organizations,
 * then users, then keys, each in the order of their keys, so two transactions that take several cannot deadlock
 * on them (a second call in one transaction, a leak report's after its admin's check, asks again only for locks
 * its check took); a user's key is the id's hashtext (two ids may share one: they then queue together, which is
 * only slower). A work that takes none (reads, the batched last-use writes, secret rotation) is not ordered by
 * them, as before.
 * The keys a reveal shows are locked by sixteenths of an organization, not one lock each: each advisory lock takes
 * a place in PostgreSQL's shared lock table (max_locks_per_transaction times max_connections places, 6,400 by
 * default), and a batch of key views shows up to thousands of keys, so two or three batches at once answered "out
 * of shared memory" when each key had its own.
 */
export async function queueForAuthority(
  manager: EntityManager,
  params: {
    organizationIds: readonly string[];
    changesOrganization?: boolean;
    shared: readonly string[];
    exclusive: readonly string[];
    keysShown?: readonly KeyOwner[];
    keysReplaced?: readonly KeyOwner[];
  },
): Promise<void> {
  const { keysShown = [], keysReplaced = [] } = params;
  const keys = [...keysShown, ...keysReplaced];
  if (params.organizationIds.length + params.shared.length + params.exclusive.length + keys.length === 0) return;
  await runPreparedIn(manager, QUEUE_FOR_AUTHORITY, [
    [...params.organizationIds],
    params.changesOrganization ?? false,
    [...params.shared, ...params.exclusive],
    [...params.shared.map(() => false), ...params.exclusive.map(() => true)],
    keys.map((owner) => owner.userId),
    keys.map((owner) => owner.organizationId),
    [...keysShown.map(() => false), ...keysReplaced.map(() => true)],
  ]);
}

/**
 * queueForAuthority's statement: `$1` organization ids, `$2` whether those are exclusive, `$3` user ids, `$4`
 * whether each is exclusive, `$5` and `$6` the users and organizations of keys, `$7` whether each is exclusive.
 * The spaces sort organizations, users, keys.
 */
const QUEUE_FOR_AUTHORITY = `SELECT CASE WHEN q.exclusive THEN pg_advisory_xact_lock(q.space, q.key)
                                    ELSE pg_advisory_xact_lock_shared(q.space, q.key) END
  FROM (SELECT t.space, t.key, bool_or(t.exclusive) AS exclusive
          FROM (SELECT ${ORGANIZATION_AUTHORITY_LOCK_SPACE} AS space, hashtext(o.id::text) AS key, $2::bool AS exclusive
                  FROM unnest($1::uuid[]) AS o (id)
                UNION ALL
                SELECT ${AUTHORITY_LOCK_SPACE}, hashtext(u.id::text), u.exclusive
                  FROM unnest($3::uuid[], $4::bool[]) AS u (id, exclusive)
                UNION ALL
                SELECT ${KEY_AUTHORITY_LOCK_SPACE}, ${keyLockKey('k.user_id', 'k.organization_id')}, k.exclusive
                  FROM unnest($5::uuid[], $6::uuid[], $7::bool[]) AS k (user_id, organization_id, exclusive)) t
         GROUP BY 1, 2 ORDER BY 1, 2) q`;

/** Locks organization rows, by id; returns the active ones. */
export async function lockOrganizations(
  manager: EntityManager,
  params: { ids: readonly string[]; lock: RowLock },
): Promise<Set<string>> {
  const rows = await runPreparedIn<{ id: string; is_active: boolean }>(
    manager,
    `SELECT id, is_active FROM organizations WHERE id = ANY($1) ORDER BY id ${params.lock}`,
    [[...params.ids]],
  );
  return new Set(rows.filter((row) => row.is_active).map((row) => row.id));
}

/** Locks users rows of the given organizations in one statement, by id; returns them as they are now. */
export async function lockUsers(
  manager: EntityManager,
  params: { ids: readonly string[]; organizationIds: readonly string[]; lock: RowLock },
): Promise<Map<string, User>> {
  const rows = await runPreparedIn<UserRow>(
    manager,
    `SELECT ${USER_COLUMNS} FROM users u WHERE u.id = ANY($1) AND u.organization_id = ANY($2) ORDER BY u.id ${params.lock}`,
    [[...params.ids], [...params.organizationIds]],
  );
  return new Map(rows.map((row) => [row.id, userFromRow(row)]));
}

export interface Act {
  readonly actor: Actor;
  /**
   * Users the act changes. They are locked with the actor, FOR NO KEY UPDATE, in one statement; with none the
   * actor's row is locked FOR SHARE.
   */
  readonly targetIds?: readonly string[];
  /**
   * A stronger lock of the organization row than every act's FOR KEY SHARE, taken first (upgrading a weaker
   * lock to it later would deadlock two admins acting at once):
   * - FOR NO KEY UPDATE for the acts that can remove an organization's last active admin (role change,
   *   deactivation): they serialize among themselves, and other acts and reveals (FOR KEY SHARE) don't wait;
   * - FOR UPDATE for an act that ends credentials across the organization at once (a key policy applied to
   *   existing keys): it waits for every act, sign-in, reveal and leak report of the organization in flight
   *   (each holds FOR KEY SHARE from its check to its commit), and those that come after it wait for its commit
   *   and are checked against it. Its own rewrite of `expires_at` would order acts too (FOR NO KEY UPDATE
   *   conflicts with an act's FOR SHARE of its key row), but only of the key rows it rewrites: the organization
   *   row orders them all, the keys it leaves unchanged and the keys issued under the old policy included.
   *   Its organization's authority lock is taken exclusive before it (queueForAuthority), so that the acts that
   *   come while it waits queue behind it instead of taking FOR KEY SHARE past it.
   */
  readonly organizationLock?: 'FOR NO KEY UPDATE' | 'FOR UPDATE';
  /**
   * The act reveals, issues or regenerates an access key: a key in its grace period (replaced by a
   * regeneration) is refused it with ReplacedKeyError. Key reveals (confirmEach) always are. With targets, the
   * act replaces their keys (a regeneration, a leak report): it queues for their key locks exclusive
   * (queueForAuthority), so the reveals of those keys that come after it wait for it.
   */
  readonly handlesKeys?: boolean;
}

/** An actor whose authority was confirmed, with what the check read under its locks. */
export interface ConfirmedAct {
  /** The actor's abilities from their row as committed now (their role may have changed since the request began). */
  readonly ability: AppAbility;
  /** The locked users rows of the act (actor and targets) that belong to the actor's organization, by id. */
  readonly users: ReadonlyMap<string, User>;
  /** The request is carried by a key replaced by a regeneration, in its grace period (see ReplacedKeyError). */
  readonly viaReplacedKey: boolean;
  /**
   * Runs `decide` with the fresh abilities. When it refuses and the actor's role changed since the request
   * began, the refusal is FORBIDDEN, and every later act of the request is refused the same way.
   */
  authorize(decide: (ability: AppAbility) => void): void;
}

interface CheckedActor {
  readonly actor: Actor;
  readonly act: ConfirmedAct | DomainError;
}

/**
 * The check at the moment of each act (DESIGN.md, "Authority at the moment of the act"). Every write and
 * every key reveal calls it inside its own transaction, before its first write. It reads the acting user as
 * committed now, under row locks that conflict with the changes that end authority, so a concurrent
 * deactivation, demotion, key regeneration, sign-out or organization deactivation is ordered against the act
 * by PostgreSQL: it either committed first (and the act is refused) or waits until the act has committed.
 *
 * - users row FOR SHARE (or FOR NO KEY UPDATE with targets): conflicts with the UPDATE that deactivates or
 *   demotes the user;
 * - organization row FOR KEY SHARE (or FOR NO KEY UPDATE): conflicts with deactivating the organization (an
 *   UPDATE of `is_active` takes FOR UPDATE), not with another admin's role change or deactivation;
 * - the access_keys row FOR SHARE: conflicts with regeneration, which rewrites `key_digest` (a unique column,
 *   so PostgreSQL takes FOR UPDATE), and with an UPDATE of its other columns (FOR NO KEY UPDATE): an expiry or
 *   the end of a grace period written by an operator in SQL, which FOR KEY SHARE let commit past an act that
 *   had checked the key and then wrote (test/auth/authority.test.ts). The batched `last_used_at` writes skip
 *   rows held and wait for one row at a time holding no other (AccessKeyService.flushUse), so they cannot
 *   deadlock with an act that holds its own key row and regenerates another's;
 * - the sessions row FOR SHARE: conflicts with logout and revocation (UPDATE of `revoked_at`).
 *
 * A refusal is remembered on the actor, so later acts of the same request are refused without a query.
 */
export class Authority {
  constructor(private readonly deps: { authCache: AuthCache; hooks: PauseHooks; clock?: Clock }) {}

  /** Throws the refusal an earlier act of this request met, if any: no query. */
  throwIfRefused(actor: Actor): void {
    if (actor.refusal) throw actor.refusal;
  }

  /**
   * Confirms one actor for one act, in the act's transaction, taking the locks of the act (see Act). Throws
   * AuthorityEndedError (UNAUTHENTICATED) when the actor or their organization is inactive or the credential
   * carrying the request no longer works, or the refusal an earlier act of the request met.
   */
  async confirm(manager: EntityManager, act: Act): Promise<ConfirmedAct> {
    const { actor } = act;
    this.throwIfRefused(actor);
    await this.deps.hooks.beforeAuthorityCheck?.(actor);
    const targetIds = act.targetIds ?? [];
    const {
      checked: [checked],
    } = await this.check(manager, {
      actors: [actor],
      organizationLock: act.organizationLock ?? 'FOR KEY SHARE',
      usersLock: targetIds.length > 0 ? 'FOR NO KEY UPDATE' : 'FOR SHARE',
      targetIds,
      replacesKeys: act.handlesKeys && targetIds.length > 0,
    });
    if (checked.act instanceof DomainError) throw checked.act;
    if (act.handlesKeys && checked.act.viaReplacedKey) throw new ReplacedKeyError();
    await this.deps.hooks.afterAuthorityCheck?.(actor);
    return checked.act;
  }

  /**
   * Confirms several actors at once (a batch of key reveals): shared locks only, taken in the one order.
   * Each actor gets its confirmed act or the error that refuses it. The key rows of `revealing` (the users
   * whose keys the batch reveals) are locked FOR SHARE with the actors' own, in one statement by user id (the
   * order of INSERT_IF_CONFIRMED), so no regeneration of them commits before the batch does; `keyCiphertexts`
   * are their ciphertexts as locked, by user id (none for a user without a key row, nor when every actor had
   * been refused earlier in its request: then nothing is locked).
   */
  async confirmEach(
    manager: EntityManager,
    params: { actors: readonly Actor[]; revealing: readonly KeyOwner[] },
  ): Promise<{ verdicts: Map<Actor, ConfirmedAct | DomainError>; keyCiphertexts: Map<string, Buffer> }> {
    const verdicts = new Map<Actor, ConfirmedAct | DomainError>();
    const pending: Actor[] = [];
    for (const actor of params.actors) {
      if (actor.refusal) verdicts.set(actor, actor.refusal);
      else pending.push(actor);
    }
    if (pending.length === 0) return { verdicts, keyCiphertexts: new Map() };
    for (const actor of pending) await this.deps.hooks.beforeAuthorityCheck?.(actor);
    const { checked, keyCiphertexts } = await this.check(manager, {
      actors: pending,
      organizationLock: 'FOR KEY SHARE',
      usersLock: 'FOR SHARE',
      targetIds: [],
      revealing: params.revealing,
    });
    // Every batch confirmed here reveals keys: a replaced key may not see any.
    for (const { actor, act } of checked)
      verdicts.set(actor, !(act instanceof DomainError) && act.viaReplacedKey ? new ReplacedKeyError() : act);
    for (const actor of pending) await this.deps.hooks.afterAuthorityCheck?.(actor);
    return { verdicts, keyCiphertexts };
  }

  /**
   * A batch of key views in one statement, its own transaction (one round trip instead of confirmEach's
   * BEGIN, three locking reads, INSERT and COMMIT): it takes confirmEach's locks in the same order (organization
   * rows FOR KEY SHARE, users rows FOR SHARE, then key rows FOR SHARE and session rows FOR SHARE, each table
   * by id) and inserts the rows of each actor whose authority stands exactly as the request authenticated it:
   * organization and user active, the role unchanged, the current key (not expired by this authority's clock)
   * or a live session. When it resolves, those rows are committed. A concurrent change that ends an actor's
   * authority either committed before the statement locked the row (the statement reads the row as committed
   * then, and that actor is not confirmed) or waits for the statement's commit, as with confirmEach.
   *
   * The key rows it locks are the actors' and the views' targets': a regeneration of a target either committed
   * before the lock (the view's row then comes back in `replaced`, with the key row's ciphertext as locked) or
   * waits for the views' commit, so the key a view shows is the target's key when the view committed.
   *
   * Returns the actors whose rows were inserted, and the inserted rows whose target's key is no longer the one
   * the reveal read (ReplacedKeys). It decides nothing else: an actor not confirmed here (authority
   * ended, role changed, a replaced key, a refusal earlier in the request) had nothing inserted and must be
   * judged by confirmEach in a transaction, which gives its refusal or its confirmation under the new role.
   * The caller has checked every row against its actor's abilities as authenticated: with the role unchanged,
   * those are the abilities confirmEach would use. While a test sets beforeAuthorityCheck or afterAuthorityCheck
   * (pauses at points inside the check, which one statement does not have) it confirms nobody and sends
   * nothing: every batch then goes through confirmEach, where the pauses are.
   * @throws the database's error (then nothing of the batch was inserted).
   */
  async insertIfConfirmed(
    dataSource: DataSource,
    entries: ReadonlyArray<{ readonly actor: Actor; readonly rows: readonly KeyViewRow[] }>,
  ): Promise<{ confirmed: Set<Actor>; replaced: ReplacedKeys }> {
    const candidates = entries.filter(({ actor }) => !actor.refusal && credentialOf(actor.principal) !== null);
    const { hooks } = this.deps;
    const replaced: ReplacedKeys = new Map();
    if (candidates.length === 0 || hooks.beforeAuthorityCheck || hooks.afterAuthorityCheck) {
      return { confirmed: new Set(), replaced };
    }
    // One confirmation per principal: the requests of one credential share the principal its authentication
    // cached, and the statement's verdict depends on nothing else (under load a batch held one admin's principal
    // once per request, each element of seven arrays parsed and confirmed again by PostgreSQL).
    const actors: Array<Actor['principal']> = [];
    const principalOf: number[] = [];
    const principalIndex = new Map<Actor['principal'], number>();
    for (const { actor } of candidates) {
      let i = principalIndex.get(actor.principal);
      if (i === undefined) {
        i = actors.length;
        principalIndex.set(actor.principal, i);
        actors.push(actor.principal);
      }
      principalOf.push(i);
    }
    const digestOf: number[] = [];
    const digests: Buffer[] = [];
    // The views' columns that differ by row; what is the same for a request's views (who acted, from where,
    // ACCESS_KEY_VIEWED) is sent once per `who` and joined in the statement: a page's 100 views were seven
    // arrays of 100 elements, each element quoted by pg.
    const whoOf: number[] = [];
    const targetIds: string[] = [];
    const targetOrganizationIds: string[] = [];
    const rows: KeyViewRow[] = [];
    const whos = new Map<KeyViewRow['actor'], number>();
    const whoActor: number[] = [];
    // The actors' key rows, locked with the targets' by user id in the statement ($3, each once; the statement
    // orders them).
    const keyRowIds: string[] = [];
    actors.forEach((principal, i) => {
      if (principal.kind === 'ACCESS_KEY') keyRowIds.push(principal.userId);
      for (const digest of principal.keyDigests ?? []) {
        digestOf.push(i);
        digests.push(digest);
      }
    });
    candidates.forEach(({ rows: own }, candidate) => {
      const i = principalOf[candidate];
      for (const row of own) {
        if (row.action !== AuditAction.ACCESS_KEY_VIEWED) throw new Error('insertIfConfirmed inserts key views only');
        let who = whos.get(row.actor);
        if (who === undefined) {
          who = whoActor.length;
          whos.set(row.actor, who);
          whoActor.push(i);
        }
        whoOf.push(who);
        targetIds.push(row.targetUserId!);
        targetOrganizationIds.push(row.organizationId!);
        rows.push(row);
      }
    });
    const whoRows = [...whos.keys()];
    // Which encryption each reveal read: its IV (encryptionIdOf), the views' one after another in one bytea, sent
    // as binary: 12 bytes a view instead of an array of hex strings.
    const encryptions = Buffer.allocUnsafe(rows.length * ENCRYPTION_ID_BYTES);
    for (let j = 0; j < rows.length; j++)
      rows[j].keyCiphertext.copy(encryptions, j * ENCRYPTION_ID_BYTES, 0, ENCRYPTION_ID_BYTES);
    const organizationIds = sortedUnique(actors.map((principal) => principal.organizationId));
    // The values once the statement has its connection: $12, the clock, read after any wait for one.
    const answers = await runPreparedOnConnection<{
      i: number | null;
      view_index: number | null;
      key_ciphertext: Buffer | null;
    }>(dataSource, INSERT_IF_CONFIRMED, () => [
      organizationIds,
      sortedUnique(actors.map((principal) => principal.userId)),
      // Each user id once: a batch of reveals of one key by one admin held it twice a request, and the
      // generic plan's scan compared every row of access_keys with every element (docs/performance.md).
      uuidArrayLiteral([...new Set([...keyRowIds, ...targetIds])]),
      sortedUnique(actors.flatMap((principal) => (principal.kind === 'SESSION' ? [principal.sessionId!] : []))),
      actors.map((_, i) => i),
      actors.map((principal) => principal.userId),
      actors.map((principal) => principal.organizationId),
      actors.map((principal) => principal.role),
      actors.map((principal) => (principal.kind === 'SESSION' ? principal.sessionId! : null)),
      digestOf,
      digests,
      new Date((this.deps.clock ?? systemClock).now()),
      // The views' arrays, 100 elements for a page, as literals (array-literal.ts): pg quotes each element.
      integerArrayLiteral(whoOf),
      uuidArrayLiteral(targetIds),
      uuidArrayLiteral(targetOrganizationIds),
      encryptions,
      whoActor,
      whoRows.map((who) => who.userId),
      whoRows.map((who) => who.kind),
      whoRows.map((who) => who.ip),
      whoRows.map((who) => who.requestId),
      AuditAction.ACCESS_KEY_VIEWED,
    ]);
    const confirmedPrincipals = new Set<number>();
    for (const answer of answers) {
      if (answer.i !== null) confirmedPrincipals.add(answer.i);
      else replaced.set(rows[answer.view_index!], answer.key_ciphertext);
    }
    const confirmed = new Set<Actor>();
    candidates.forEach(({ actor }, candidate) => {
      if (confirmedPrincipals.has(principalOf[candidate])) confirmed.add(actor);
    });
    return { confirmed, replaced };
  }

  /**
   * The check's locks in the one order and its verdicts; with `revealing`, those users' key rows are locked
   * FOR SHARE with the credential rows and their ciphertexts returned (see confirmEach).
   */
  private async check(
    manager: EntityManager,
    params: {
      actors: readonly Actor[];
      organizationLock: RowLock;
      usersLock: RowLock;
      targetIds: readonly string[];
      /** The act replaces its targets' keys (a regeneration, a leak report): their key locks are exclusive. */
      replacesKeys?: boolean;
      revealing?: readonly KeyOwner[];
    },
  ): Promise<{ checked: CheckedActor[]; keyCiphertexts: Map<string, Buffer> }> {
    const { actors } = params;
    const organizationIds = sortedUnique(actors.map((actor) => actor.principal.organizationId));
    await queueForAuthority(manager, {
      organizationIds,
      changesOrganization: params.organizationLock === 'FOR UPDATE',
      shared: actors.map((actor) => actor.principal.userId),
      exclusive: params.targetIds,
      keysShown: params.revealing,
      // Targets of the actor's organization: one of another is refused by the check.
      keysReplaced: params.replacesKeys
        ? params.targetIds.map((userId) => ({ userId, organizationId: actors[0].principal.organizationId }))
        : [],
    });
    const activeOrganizations = await lockOrganizations(manager, {
      ids: organizationIds,
      lock: params.organizationLock,
    });
    const users = await lockUsers(manager, {
      ids: sortedUnique([...actors.map((actor) => actor.principal.userId), ...params.targetIds]),
      organizationIds,
      lock: params.usersLock,
    });
    const { valid: validCredentials, keyCiphertexts } = await this.lockCredentials(manager, {
      actors,
      revealing: (params.revealing ?? []).map((owner) => owner.userId),
    });
    const checked = actors.map((actor): CheckedActor => {
      const { principal } = actor;
      const user = users.get(principal.userId);
      const credential = validCredentials.get(actor);
      const authentic = !!credential && !!user?.isActive && activeOrganizations.has(principal.organizationId);
      if (!authentic) return { actor, act: this.refuse(actor, new AuthorityEndedError(principal.kind)) };
      const ability = user.role === principal.role ? actor.ability : null;
      return { actor, act: this.confirmed({ actor, ability, users, viaReplacedKey: credential === 'REPLACED_KEY' }) };
    });
    return { checked, keyCiphertexts };
  }

  /**
   * Locks the credential rows that carry the actors' requests; returns the actors whose credential still
   * works, each with whether it is current or a replaced key in its grace period. Key rows are locked FOR SHARE
   * (see Authority), with `revealing` together with those users' key rows, whose ciphertexts as locked it
   * returns by user id.
   */
  private async lockCredentials(
    manager: EntityManager,
    params: { actors: readonly Actor[]; revealing: readonly string[] },
  ): Promise<{ valid: Map<Actor, 'CURRENT' | 'REPLACED_KEY'>; keyCiphertexts: Map<string, Buffer> }> {
    const { actors, revealing } = params;
    const valid = new Map<Actor, 'CURRENT' | 'REPLACED_KEY'>();
    const keyCiphertexts = new Map<string, Buffer>();
    const keyHolders = actors.filter((actor) => actor.principal.kind === 'ACCESS_KEY');
    const sessionHolders = actors.filter((actor) => actor.principal.kind === 'SESSION');
    if (keyHolders.length > 0 || revealing.length > 0) {
      const holderIds = keyHolders.map((actor) => actor.principal.userId);
      const rows = await runPreparedIn<{
        user_id: string;
        key_digest: Buffer;
        previous_key_digest: Buffer | null;
        expires_at: Date | null;
        previous_key_own_expires_at: Date | null;
        key_ciphertext?: Buffer;
      }>(manager, revealing.length > 0 ? LOCK_KEYS_REVEALING : LOCK_KEYS, [
        sortedUnique(revealing.length > 0 ? [...holderIds, ...revealing] : holderIds),
      ]);
      for (const row of rows) if (row.key_ciphertext) keyCiphertexts.set(row.user_id, row.key_ciphertext);
      const byUser = new Map(rows.map((row) => [row.user_id, row]));
      const nowMs = (this.deps.clock ?? systemClock).now();
      for (const actor of keyHolders) {
        const row = byUser.get(actor.principal.userId);
        // Under any secret of the keyring: rotate-secret re-digests a key without replacing it.
        const presented = (digest: Buffer | null) =>
          !!digest && !!actor.principal.keyDigests?.some((mine) => mine.equals(digest));
        if (!row) continue;
        // The current key acts only before its expiry (maxKeyAgeDays), by the same clock as authentication.
        if (presented(row.key_digest)) {
          if (row.expires_at === null || row.expires_at.getTime() > nowMs) valid.set(actor, 'CURRENT');
        } else if (presented(row.previous_key_digest)) {
          // A replaced key acts only before its own expiry too, by the same clock as the current key's.
          const ownExpiry = row.previous_key_own_expires_at;
          if (ownExpiry === null || ownExpiry.getTime() > nowMs) valid.set(actor, 'REPLACED_KEY');
        }
      }
    }
    if (sessionHolders.length > 0) {
      const rows = await runPreparedIn<{ id: string }>(
        manager,
        `SELECT id FROM sessions WHERE id = ANY($1) AND revoked_at IS NULL AND expires_at > ${CHECKED_AT} ORDER BY id FOR SHARE`,
        [sortedUnique(sessionHolders.flatMap((actor) => actor.principal.sessionId ?? []))],
      );
      const live = new Set(rows.map((row) => row.id));
      for (const actor of sessionHolders) if (live.has(actor.principal.sessionId!)) valid.set(actor, 'CURRENT');
    }
    return { valid, keyCiphertexts };
  }

  /** `ability` is null when the role changed: the cached principal is stale and the ability is built afresh. */
  private confirmed(params: {
    actor: Actor;
    ability: AppAbility | null;
    users: ReadonlyMap<string, User>;
    viaReplacedKey: boolean;
  }): ConfirmedAct {
    const { actor, ability, users, viaReplacedKey } = params;
    const fresh = users.get(actor.principal.userId)!;
    const roleChanged = ability === null;
    if (roleChanged) this.deps.authCache.evictUser(actor.principal.userId);
    const current = ability ?? defineAbilityFor({ ...actor.principal, role: fresh.role });
    return {
      ability: current,
      users,
      viaReplacedKey,
      authorize: (decide) => {
        try {
          decide(current);
        } catch (error) {
          if (roleChanged && error instanceof DomainError) throw this.refuse(actor, new RoleChangedError());
          throw error;
        }
      },
    };
  }

  /** Remembers the refusal for the rest of the request and forgets the actor's cached credentials. */
  private refuse(actor: Actor, error: DomainError): DomainError {
    actor.refusal = error;
    // The NOTIFY of the change that ended this authority may not have arrived yet.
    this.deps.authCache.evictUser(actor.principal.userId);
    return error;
  }
}

/**
 * The moment a session's or a grace period's end is compared with (PostgreSQL's clock, as at sign-in and
 * regeneration): when the check reads the row, after the locks it waited for. Not now(), the time the
 * transaction (or the one statement) began: a check that waited behind another act's lock while the end went
 * by would still let the credential act (test/auth/ended-while-waiting.test.ts). The locks waited for are
 * those taken before in the one order (organization, users rows); a wait for the row itself reads the clock
 * again only when its holder changed the row (PostgreSQL rechecks the condition then), which is how the row's
 * writers hold it (a sign-out or a regeneration is an UPDATE).
 */
const CHECKED_AT = 'clock_timestamp()';

/**
 * The service's clock (Clock: what key expiry is decided by) when insertIfConfirmed's statement checks a key,
 * after the locks it waited for: its reading when the statement was sent ($12, read once it has its connection)
 * moved on by the time PostgreSQL measured since the statement's transaction began. $12 alone is the moment
 * before any wait: a key that expired while the statement waited behind another act's lock would still reveal
 * (test/auth/ended-while-waiting.test.ts). Measured from now(), the start of the statement's implicit
 * transaction (its first protocol message, Parse or Bind), not statement_timestamp(): PostgreSQL sets that
 * again when the Execute message is processed, after the table locks a prepared statement takes at Bind, so a
 * wait for a table lock (a migration's) was not counted (test/auth/key-view-table-lock-wait.test.ts).
 * confirm and confirmEach read the clock in JavaScript after their locking statements instead.
 */
const SERVICE_CLOCK_AT_CHECK = '($12::timestamptz + (clock_timestamp() - now()))';

const KEY_CREDENTIAL_COLUMNS = `user_id, key_digest,
  CASE WHEN previous_key_expires_at > ${CHECKED_AT} THEN previous_key_digest END AS previous_key_digest, expires_at,
  previous_key_own_expires_at`;

/** An act's key rows ($1): FOR SHARE, see Authority. */
const LOCK_KEYS = `SELECT ${KEY_CREDENTIAL_COLUMNS} FROM access_keys WHERE user_id = ANY($1) ORDER BY user_id FOR SHARE`;

/**
 * A batch of reveals' key rows ($1: the actors' and the revealed keys' users, each once): FOR
 * SHARE, in one user id order, as INSERT_IF_CONFIRMED's `k` takes them, with the ciphertexts the batch shows.
 */
const LOCK_KEYS_REVEALING = `SELECT ${KEY_CREDENTIAL_COLUMNS}, key_ciphertext FROM access_keys
  WHERE user_id = ANY($1) ORDER BY user_id FOR SHARE`;

/** What carries the request, for insertIfConfirmed: null for anything it does not confirm itself. */
function credentialOf(principal: Actor['principal']): 'KEY' | 'SESSION' | null {
  if (principal.kind === 'ACCESS_KEY') return principal.keyDigests?.length ? 'KEY' : null;
  if (principal.kind === 'SESSION') return principal.sessionId ? 'SESSION' : null;
  return null;
}

/**
 * insertIfConfirmed's statement. It first takes queueForAuthority's shared locks of its actors (`q`: in key
 * order, as that statement does), then its row locks. Its locks keep RowLock's order although they are in one
 * statement: each locking CTE waits, through an uncorrelated count of the CTE before it (an InitPlan that PostgreSQL evaluates
 * before the scan it gates starts), until that CTE has locked all its rows; each locks its rows in id order.
 * MATERIALIZED: every CTE runs once, so each row is locked once and read as locked: PostgreSQL returns a row
 * as committed when a lock was granted only when the lock conflicts with the change; a key row is therefore
 * locked FOR SHARE here (FOR KEY SHARE let an expiry committed while the statement waited read as the
 * snapshot's `expires_at`, test/auth/key-view-stale-expiry.test.ts). `k` holds the actors' key rows and the
 * views' targets' ($3: each user id once; $14 has the targets one per view), in one user id order: a
 * regeneration of a target either committed before the lock (and `k` holds its key) or waits for the views'
 * commit. It waits for the minute's `last_used_at` write at most;
 * both take key rows in user id order. `who` is each request's part of the views' rows (by index from 0: the
 * place `i` in $5 of the actor's principal, its user id, kind, ip and request id), sent once and not once per view. `r`, the views
 * (`n` their place from 1, its `who`, target and organization, and the encryption its reveal read: `encryptionIdOf`
 * its ciphertext, the n-th 12 bytes of $16), reads `confirmed`, so the insert (in the views' order, action $22)
 * runs after every lock. The answer is a
 * row per confirmed actor (`i`) and one per view whose target's key row holds another encryption than the one
 * read (`view_index`, from 0, with the key row's ciphertext, null for no key row). test/auth/key-views-at-once.test.ts checks the lock order
 * and the races; test/users/page-regeneration-race.test.ts the replaced keys. A key's expiry is compared with
 * SERVICE_CLOCK_AT_CHECK, sessions' with CHECKED_AT: both after the locks the statement waited for.
 */
export const INSERT_IF_CONFIRMED = `WITH q AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(q.space, q.key)
      FROM (SELECT ${ORGANIZATION_AUTHORITY_LOCK_SPACE} AS space, hashtext(o.id::text) AS key FROM unnest($1::uuid[]) AS o (id)
            UNION
            SELECT ${AUTHORITY_LOCK_SPACE}, hashtext(t.id::text) FROM unnest($2::uuid[]) AS t (id)
            UNION
            SELECT ${KEY_AUTHORITY_LOCK_SPACE}, ${keyLockKey('v.user_id', 'v.organization_id')}
              FROM unnest($14::uuid[], $15::uuid[]) AS v (user_id, organization_id) ORDER BY 1, 2) q),
  o AS MATERIALIZED (
    SELECT id, is_active FROM organizations WHERE id = ANY($1::uuid[]) AND (SELECT count(*) FROM q) >= 0
     ORDER BY id FOR KEY SHARE),
  u AS MATERIALIZED (
    SELECT id, organization_id, role, is_active FROM users
     WHERE id = ANY($2::uuid[]) AND organization_id = ANY($1::uuid[]) AND (SELECT count(*) FROM o) >= 0
     ORDER BY id FOR SHARE),
  k AS MATERIALIZED (
    SELECT user_id, key_digest, expires_at, key_ciphertext FROM access_keys
     WHERE user_id = ANY($3::uuid[]) AND (SELECT count(*) FROM u) >= 0 ORDER BY user_id FOR SHARE),
  s AS MATERIALIZED (
    SELECT id FROM sessions
     WHERE id = ANY($4::uuid[]) AND revoked_at IS NULL AND expires_at > ${CHECKED_AT} AND (SELECT count(*) FROM k) >= 0
     ORDER BY id FOR SHARE),
  confirmed AS MATERIALIZED (
    SELECT a.i FROM unnest($5::int[], $6::uuid[], $7::uuid[], $8::text[], $9::uuid[]) AS a (i, user_id, organization_id, role, session_id)
      JOIN o ON o.id = a.organization_id AND o.is_active
      JOIN u ON u.id = a.user_id AND u.organization_id = a.organization_id AND u.is_active AND u.role = a.role
     WHERE CASE WHEN a.session_id IS NULL
       THEN EXISTS (SELECT 1 FROM k JOIN unnest($10::int[], $11::bytea[]) AS d (i, digest) ON d.digest = k.key_digest
                     WHERE k.user_id = a.user_id AND d.i = a.i AND (k.expires_at IS NULL OR k.expires_at > ${SERVICE_CLOCK_AT_CHECK}))
       ELSE EXISTS (SELECT 1 FROM s WHERE s.id = a.session_id) END),
  who AS (
    SELECT * FROM unnest($17::int[], $18::uuid[], $19::text[], $20::text[], $21::text[]) WITH ORDINALITY
        AS who (i, actor_user_id, actor_kind, ip, request_id, n)),
  r AS (
    SELECT v.n, v.organization_id, v.target_user_id, who.actor_user_id, who.actor_kind, who.ip, who.request_id,
           substring($16::bytea FROM ((v.n - 1) * ${ENCRYPTION_ID_BYTES} + 1)::int FOR ${ENCRYPTION_ID_BYTES}) AS key_encryption
      FROM unnest($13::int[], $14::uuid[], $15::uuid[]) WITH ORDINALITY AS v (who_index, target_user_id, organization_id, n)
      JOIN who ON who.n = v.who_index + 1
     WHERE who.i IN (SELECT i FROM confirmed)),
  inserted AS (
    INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, target_user_id, ip, request_id)
    SELECT organization_id, $22::text, actor_user_id, actor_kind, target_user_id, ip, request_id FROM r ORDER BY n)
SELECT i, NULL::int AS view_index, NULL::bytea AS key_ciphertext FROM confirmed
UNION ALL
SELECT NULL, (r.n - 1)::int, k.key_ciphertext FROM r LEFT JOIN k ON k.user_id = r.target_user_id
 WHERE substring(k.key_ciphertext FROM 1 FOR ${ENCRYPTION_ID_BYTES}) IS DISTINCT FROM r.key_encryption`;

/** The values once each, in ascending order: the order rows are locked in (see RowLock). */
export function sortedUnique(values: readonly string[]): string[] {
  return [...new Set(values)].sort();
}
