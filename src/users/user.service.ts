import { subject } from '@casl/ability';
import { type DataSource, type EntityManager, QueryFailedError } from 'typeorm';

import type { AccessKeyService, IssuedKey } from '../access-keys/access-key.service';
import { accessKeyFromJoinedRow, JOINED_KEY_COLUMNS, type JoinedKeyRow } from '../access-keys/access-key.service';
import { type Clock, expiryMs, systemClock } from '../access-keys/clock';
import { MAX_KEY_AGE_DAYS } from '../access-keys/key-policy.service';
import { type AuditActor, auditActorOf, type AuditService } from '../audit/audit.service';
import { AuditAction } from '../audit/audit-event.entity';
import type { AuthCache } from '../authentication/auth-cache';
import type { PasswordHasher } from '../authentication/password';
import { type Action, type AppAbility, scopeOf } from '../authorization/abilities';
import { type Authority, type ConfirmedAct, ReplacedKeyError } from '../authorization/authority';
import { runForArrays, runPlannedEach, runPrepared, runPreparedForIds } from '../db/prepared';
import { SqlWhere } from '../db/scope';
import { SharedReads } from '../db/shared-reads';
import { BadInputError, ConflictError, ForbiddenError, NotFoundError } from '../errors';
import { parseId } from '../graphql/ids';
import { MAX_PAGE_SIZE } from '../graphql/pagination';
import { hasUnpairedSurrogate, normalizeName } from '../graphql/text-checks';
import { holdsNul } from '../graphql/text-input';
import type { Actor } from '../request/actor';
import { GrantedChecks } from '../request/granted-checks';
import type { Loaders } from '../request/loaders';
import type { SessionService } from '../sessions/session.service';
import { Role, User } from './user.entity';
import type { CreateUserInput, UpdateUserInput, UsersFilter } from './user.inputs';
import {
  ALL_PAGE_COLUMNS,
  PAGE_SLIM_USER_COLUMNS,
  type PageColumns,
  type SlimUserArray,
  USER_COLUMNS,
  USER_SCOPE_COLUMNS,
  userFromRow,
  userFromSlimArray,
  type UserRow,
} from './user.queries';
import type { UserConnection } from './user.types';
import { canonicalEmail, checkNewPassword, normalizeEmail } from './user.validation';
import { countFromCounts } from './user-counts';

const MAX_SEARCH_LENGTH = 200;

export interface NewUser {
  organizationId: string;
  email: string;
  name: string;
  role: Role;
  /** Hashed before the transaction (see UserService.hashNewPassword): scrypt must not run under row locks. */
  passwordHash?: string | null;
  actor: AuditActor;
}

interface Cursor {
  name: string;
  id: string;
}

function encodeCursor(user: User): string {
  return Buffer.from(JSON.stringify([user.name, user.id])).toString('base64url');
}

/** An edge of a page: its cursor is encoded when (and each time) it is asked for, not for every row. */
class PageEdge {
  constructor(readonly node: User) {}

  get cursor(): string {
    return encodeCursor(this.node);
  }
}

/** A page's info: `endCursor` is encoded when asked for. */
class PageInfoOf {
  constructor(
    readonly hasNextPage: boolean,
    private readonly last: User | undefined,
  ) {}

  get endCursor(): string | null {
    return this.last ? encodeCursor(this.last) : null;
  }
}

function decodeCursor(value: string): Cursor {
  try {
    // Exactly what encodeCursor writes: a name PostgreSQL can hold as given (no NUL; no unpaired surrogate, which
    // it would have compared as U+FFFD) and an id.
    const entries = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(entries) || entries.length !== 2) throw new Error('not a cursor');
    const [name, id] = entries as unknown[];
    if (typeof name === 'string' && typeof id === 'string' && !holdsNul(name) && !hasUnpairedSurrogate(name)) {
      return { name, id: parseId(id) };
    }
  } catch {
    // falls through to the error below
  }
  throw new BadInputError('"after" must be an endCursor returned by this API.', 'after');
}

/** The email index is the source of truth for uniqueness (races included): its violation is a CONFLICT. */
function duplicateEmailAsConflict(error: unknown): never {
  const driverError =
    error instanceof QueryFailedError ? (error.driverError as { code?: string; constraint?: string }) : null;
  if (driverError?.code === '23505' && driverError.constraint === 'users_email_lower_key') {
    throw new ConflictError('A user with this email already exists.');
  }
  throw error;
}

type UserWithKeyRow = UserRow & JoinedKeyRow;

/** Hands a joined row's key to the request's key loader, so `accessKey` on that user needs no query. */
function primeKey(loaders: Loaders, row: UserWithKeyRow): void {
  loaders.accessKey.prime(row.id, accessKeyFromJoinedRow(row));
}

/**
 * The key column a page reads for `accessKey` alone: a reveal needs the ciphertext, and whether there is a key
 * (access_keys.key_ciphertext is NOT NULL, so null here is no key row).
 */
const PAGE_KEY_CIPHERTEXT_COLUMNS = 'k.key_ciphertext AS key_ciphertext';

/**
 * The SELECT ... FROM of a page of users with the columns `columns` says its fields need (see pageColumnsFor):
 * without the key table when no key field is asked for.
 */
function pageSelect(columns: PageColumns): string {
  const userColumns = columns.allColumns ? USER_COLUMNS : PAGE_SLIM_USER_COLUMNS;
  if (columns.keys === 'none') return `SELECT ${userColumns} FROM users u`;
  const keyColumns = columns.keys === 'row' ? JOINED_KEY_COLUMNS : PAGE_KEY_CIPHERTEXT_COLUMNS;
  return `SELECT ${userColumns}, ${keyColumns} FROM users u LEFT JOIN access_keys k ON k.user_id = u.id`;
}

/** Users with their key rows, in one statement: a profile or a page with `accessKey` costs one query, not two. */
const USERS_WITH_KEYS = pageSelect(ALL_PAGE_COLUMNS);

/** Changes columns of one user and returns the row as it now is, in one statement. */
async function updateUser(manager: EntityManager, id: string, changes: Record<string, unknown>): Promise<User> {
  const columns = Object.keys(changes);
  if (columns.length === 0) {
    const [row] = await manager.query(`SELECT ${USER_COLUMNS} FROM users u WHERE u.id = $1`, [id]);
    return userFromRow(row);
  }
  const assignments = columns.map((column, i) => `${column} = $${i + 2}`).join(', ');
  const [rows] = await manager.query(
    `UPDATE users u SET ${assignments}, updated_at = now() WHERE u.id = $1 RETURNING ${USER_COLUMNS}`,
    [id, ...Object.values(changes)],
  );
  return userFromRow(rows[0]);
}

/** Users of an organization: every query is scoped by the caller's abilities, every change is one transaction. */
export class UserService {
  constructor(
    private readonly deps: {
      dataSource: DataSource;
      accessKeys: AccessKeyService;
      audit: AuditService;
      sessions: SessionService;
      authCache: AuthCache;
      authority: Authority;
      passwords: PasswordHasher;
      /** What "expiring within N days" is measured from (see Clock). */
      clock?: Clock;
    },
  ) {}

  /**
   * Checks a new password's length, then hashes it (bounded like every scrypt of the process, and per client
   * address: `client` is the request's address, null outside a request). See PasswordHasher.hash.
   */
  async hashNewPassword(password: string, field: string, client: string | null): Promise<string> {
    checkNewPassword(password, field);
    return this.deps.passwords.hash(password, client);
  }

  private readonly profiles = new SharedReads<UserWithKeyRow>(async (ids) => {
    const rows = await runPreparedForIds<UserWithKeyRow>(this.deps.dataSource, {
      select: USERS_WITH_KEYS,
      column: 'u.id',
      ids,
    });
    return new Map(rows.map((row) => [row.id, row]));
  });

  private record(manager: EntityManager, actor: Actor, user: User, ...actions: AuditAction[]): Promise<void> {
    const entries = actions.map((action) => ({ action, organizationId: user.organizationId, targetUserId: user.id }));
    return this.deps.audit.record(manager, auditActorOf(actor), ...entries);
  }

  /** A WHERE clause limited to the users `action` may touch: rows outside it simply don't exist for the caller. */
  private scoped(actor: Actor, action: Action): SqlWhere {
    return new SqlWhere().scope(scopeOf(actor.ability, action, 'User'), USER_SCOPE_COLUMNS);
  }

  /**
   * A page's rows as users, their keys (as far as `columns` reads them) primed into `loaders`. `planEach`:
   * planned for its values each time (a search: see runPlannedEach), else a prepared statement.
   */
  private async readPage(params: {
    where: SqlWhere;
    tail: string;
    loaders: Loaders;
    planEach: boolean;
    columns: PageColumns;
  }): Promise<User[]> {
    const { where, tail, loaders, columns } = params;
    const text = `${pageSelect(columns)} WHERE ${where} ${tail}`;
    if (!columns.allColumns && columns.keys !== 'row') {
      // The slim columns (and the key's ciphertext) by position: no row object per user (runForArrays).
      const rows = await runForArrays<SlimUserArray>(this.deps.dataSource, {
        text,
        values: where.values,
        planEach: params.planEach,
      });
      const users = new Array<User>(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i];
        // PAGE_KEY_CIPHERTEXT_COLUMNS follows the user's columns.
        if (columns.keys === 'ciphertext') loaders.primeKeyCiphertext(row[0], (row[4] as Buffer | null) ?? null);
        users[i] = userFromSlimArray(row);
      }
      return users;
    }
    const run = params.planEach ? runPlannedEach : runPrepared;
    const rows = await run<UserWithKeyRow>(this.deps.dataSource, text, where.values);
    const users = new Array<User>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (columns.keys === 'row') primeKey(loaders, row);
      // Every user column with `accessKey` alone (a page asking for `role` or `createdAt` too): the joined
      // ciphertext is what the reveal decrypts, so it does not read the page's key rows again.
      else if (columns.keys === 'ciphertext') loaders.primeKeyCiphertext(row.id, row.key_ciphertext ?? null);
      users[i] = userFromRow(row);
    }
    return users;
  }

  /**
   * One user with their key row. Concurrent requests' reads share a statement; the row is then held to
   * this caller's abilities, the same rules that scope list queries in SQL. With `revealKey` (the answer asks
   * for `accessKey`) the key is revealed before the user is returned, as a page's are (revealKeys): a key
   * replaced before its view committed is then forgotten with its row before any other field reads the row,
   * so `accessKeyInfo` describes the key shown.
   * @throws NotFoundError (no such user, or not visible to the caller), BadInputError (id).
   */
  async get(actor: Actor, id: string, loaders: Loaders, params: { revealKey?: boolean } = {}): Promise<User> {
    const row = await this.profiles.read(parseId(id));
    const user = row && userFromRow(row);
    if (!user || !actor.ability.can('read', user)) throw new NotFoundError();
    primeKey(loaders, row);
    if (params.revealKey) await this.revealKeys(actor, [user], loaders);
    return user;
  }

  /**
   * A page of the users the caller may read (abilities.ts `read` on User, applied as SQL: other rows do not
   * exist for the caller), ordered by name then id. `first` is 0 to MAX_PAGE_SIZE; `after` is a previous page's
   * `endCursor`; `filter.search` matches name or email, case-insensitive, at most MAX_SEARCH_LENGTH characters.
   * `columns` (default: all) is what the page's fields need (pageColumnsFor): a slim page's users carry only
   * PAGE_SLIM_USER_COLUMNS' fields. The key rows (or, for `accessKey` alone, their ciphertexts) come in the
   * same statement and are primed into `loaders`; when `accessKey` is asked, the keys the caller may read are
   * revealed before the page is returned (revealKeys); cursors are encoded and `countTotal` runs only if asked.
   * @throws BadInputError on `first` out of range, a search too long or a malformed cursor.
   */
  async list(
    actor: Actor,
    args: { filter?: UsersFilter; first: number; after?: string | null; columns?: PageColumns },
    loaders: Loaders,
  ): Promise<UserConnection> {
    const { filter, first, after, columns = ALL_PAGE_COLUMNS } = args;
    if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE_SIZE) {
      throw new BadInputError(`"first" must be from 0 to ${MAX_PAGE_SIZE}.`, 'first');
    }
    const where = this.scoped(actor, 'read');
    const search = filter?.search?.trim();
    if (search) {
      if (search.length > MAX_SEARCH_LENGTH) {
        throw new BadInputError(`"search" must be at most ${MAX_SEARCH_LENGTH} characters.`, 'search');
      }
      // Each column is searched in the form it is stored in: names NFC, emails canonical (NFKC, folded).
      const like = (text: string) => `%${text.replace(/[\\%_]/g, '\\$&')}%`;
      where.and('(u.name ILIKE ? OR u.email ILIKE ?)', like(search.normalize('NFC')), like(canonicalEmail(search)));
    }
    if (filter?.role) where.and('u.role = ?', filter.role);
    if (filter?.isActive !== undefined && filter.isActive !== null) where.and('u.is_active = ?', filter.isActive);
    const withinDays = filter?.keyExpiresWithinDays;
    if (withinDays !== undefined && withinDays !== null) {
      // Key expiry is key information: only those who may read accessKeyInfo may filter by it.
      if (
        !actor.ability.can('read', subject('User', { organizationId: actor.principal.organizationId }), 'accessKeyInfo')
      ) {
        throw new ForbiddenError('Only admins of the organization can filter by key expiry.');
      }
      if (!Number.isInteger(withinDays) || withinDays < 0 || withinDays > MAX_KEY_AGE_DAYS) {
        throw new BadInputError(
          `"keyExpiresWithinDays" must be from 0 to ${MAX_KEY_AGE_DAYS}.`,
          'keyExpiresWithinDays',
        );
      }
      // Already expired keys match too: they are the ones most in need of a new key.
      const until = new Date((this.deps.clock ?? systemClock).now() + withinDays * 86_400_000);
      where.and(
        `EXISTS (SELECT 1 FROM access_keys ek WHERE ek.user_id = u.id AND ${expiryMs('ek.expires_at')} <= ?)`,
        until,
      );
    }
    const counted = countFromCounts({
      scope: scopeOf(actor.ability, 'read', 'User'),
      filter: { search, role: filter?.role, isActive: filter?.isActive, keyExpiresWithinDays: withinDays },
    }) ?? {
      text: `SELECT count(*)::int AS n FROM users u WHERE ${where}`,
      values: [...where.values],
    };

    // An empty cursor is none this API gave (BAD_USER_INPUT), not the first page: only null or no argument is.
    if (after != null) {
      const cursor = decodeCursor(after);
      where.and('(u.name, u.id) > (?, ?)', cursor.name, cursor.id);
    }
    const planEach = Boolean(search);
    // LIMIT first + 1: the extra row tells hasNextPage (Relay's connection spec: more edges after the cursor than
    // `first`), so first: 0 reads one row too (no node is returned, so no key is revealed and no view recorded).
    const rows = await this.readPage({
      where,
      tail: `ORDER BY u.name, u.id LIMIT ${where.param(first + 1)}`,
      loaders,
      planEach,
      columns,
    });
    const nodes = rows.slice(0, first);
    if (columns.revealKeys) await this.revealKeys(actor, nodes, loaders);
    return {
      edges: nodes.map((node) => new PageEdge(node)),
      pageInfo: new PageInfoOf(rows.length > first, nodes[nodes.length - 1]),
      countTotal: async () => {
        const [{ n }] = await (planEach ? runPlannedEach : runPrepared)<{ n: number }>(
          this.deps.dataSource,
          counted.text,
          counted.values,
        );
        return n;
      },
    };
  }

  /**
   * Reveals the keys of a page's users whose `accessKey` the caller may read (the rule the field's @Can guard
   * applies, abilities.ts), together (Loaders.revealedKey: views committed first), so the page's `accessKey`
   * fields answer at once rather than with a promise each. Never throws: a key that could not be revealed
   * (e.g. the caller's authority ended) is the error of its field, as when the field loads it itself.
   */
  private async revealKeys(actor: Actor, users: readonly User[], loaders: Loaders): Promise<void> {
    // Remembered per row (GrantedChecks): each row's `accessKey` guard asks the same and need not ask CASL again.
    const grants = (actor.grants ??= new GrantedChecks());
    const readable = grants.canEach(actor.ability, 'read', users, 'accessKey');
    if (readable.length > 0) await loaders.revealAll(readable);
  }

  /** Inserts a user and their first access key in the caller's transaction. */
  async insert(manager: EntityManager, params: NewUser): Promise<{ user: User; key: IssuedKey }> {
    const passwordHash = params.passwordHash ?? null;
    const repository = manager.getRepository(User);
    let user: User;
    try {
      user = await repository.save(
        repository.create({
          organizationId: params.organizationId,
          email: normalizeEmail(params.email),
          name: normalizeName(params.name),
          role: params.role,
          passwordHash,
        }),
      );
    } catch (error) {
      duplicateEmailAsConflict(error);
    }
    const key = await this.deps.accessKeys.issue(manager, {
      userId: user.id,
      organizationId: user.organizationId,
      createdBy: params.actor.userId,
    });
    const target = { organizationId: user.organizationId, targetUserId: user.id };
    await this.deps.audit.record(
      manager,
      params.actor,
      { action: AuditAction.USER_CREATED, ...target },
      { action: AuditAction.ACCESS_KEY_CREATED, ...target },
    );
    return { user, key };
  }

  /**
   * createUser: a user of the caller's organization and their first access key (UserService.insert), audited
   * (USER_CREATED, ACCESS_KEY_CREATED), in one transaction. Only ADMIN may (abilities.ts `create`); checked before
   * the password is hashed (scrypt, outside the transaction) and again, with the caller's authority, inside it.
   * @throws ForbiddenError, BadInputError (email, name, or a password of fewer than MIN_PASSWORD_LENGTH
   *   characters), ConflictError (the email is taken), or the act's refusal (Authority.confirm).
   */
  async create(actor: Actor, input: CreateUserInput): Promise<User> {
    const { organizationId } = actor.principal;
    const mayCreate = (ability: AppAbility) => {
      if (!ability.can('create', subject('User', { organizationId }))) throw new ForbiddenError();
    };
    // Refused before the slow part: a password is hashed outside the transaction, so no lock waits on scrypt.
    mayCreate(actor.ability);
    this.deps.authority.throwIfRefused(actor);
    const email = normalizeEmail(input.email);
    const name = normalizeName(input.name);
    const passwordHash =
      input.password == null ? null : await this.hashNewPassword(input.password, 'password', actor.ip);
    return this.deps.dataSource.transaction(async (manager) => {
      // Creating a user issues their first key: a replaced key may not (ReplacedKeyError).
      (await this.deps.authority.confirm(manager, { actor, handlesKeys: true })).authorize(mayCreate);
      const { user } = await this.insert(manager, {
        email,
        name,
        role: input.role,
        passwordHash,
        organizationId,
        actor: auditActorOf(actor),
      });
      return user;
    });
  }

  /**
   * Runs a change of one user in a transaction that first confirms the caller's authority as committed now
   * (Authority.confirm: the caller and the user locked for the change), then checks that the caller may
   * perform `action` on that user with their current role: invisible users are NOT_FOUND, visible but
   * untouchable FORBIDDEN. After the commit the user's cached credentials are evicted. Also the frame of
   * a key regeneration (access-keys/access-key-regeneration.ts), which is a change of its user.
   * @throws BadInputError on a malformed id, NotFoundError, ForbiddenError, or the act's refusal.
   */
  async change<T>(
    actor: Actor,
    params: { id: string; action: Action; fields?: string[] },
    apply: (manager: EntityManager, user: User, act: ConfirmedAct) => Promise<T>,
  ): Promise<T> {
    const id = parseId(params.id, params.action === 'regenerateAccessKey' ? 'userId' : 'id');
    // Role changes and deactivations can remove the last active admin: they lock the organization row first.
    const organizationLock =
      params.action === 'setRole' || params.action === 'deactivate' ? ('FOR NO KEY UPDATE' as const) : undefined;
    const result = await this.deps.dataSource.transaction(async (manager) => {
      const handlesKeys = params.action === 'regenerateAccessKey';
      const act = await this.deps.authority.confirm(manager, {
        actor,
        targetIds: [id],
        organizationLock,
        handlesKeys,
      });
      const user = act.users.get(id);
      const fields = params.fields?.length ? params.fields : [undefined];
      act.authorize((ability) => {
        if (!user || !ability.can('read', user)) throw new NotFoundError();
        if (!fields.every((field) => ability.can(params.action, user, field))) throw new ForbiddenError();
      });
      return apply(manager, user!, act);
    });
    // Committed: this instance forgets the user's cached credentials now; the others on NOTIFY.
    this.deps.authCache.evictUser(id);
    return result;
  }

  /**
   * Changes a user's email and/or name. Only the fields whose value differs from the row as locked now are
   * written: a save that changes nothing (an empty input, or the same values) writes no row, no version and no
   * USER_UPDATED audit event. A user without a key is given one when the caller may regenerate that user's key
   * (and the request's key is not a replaced one: ReplacedKeyError).
   * Each field is checked by name (abilities.ts: everyone their own `name`; ADMIN `name` and `email` in the
   * organization).
   * A key issued here is not revealed: the request's loaders (when given) forget what they read of the user's key
   * (Loaders.keyChanged), so the answer's `accessKey` reveals the new key with its own view, not a null read before.
   * @throws BadInputError (id, email, name), NotFoundError (not visible), ForbiddenError (a field not granted),
   *   ConflictError (the email is taken), or the act's refusal; see `change`.
   */
  async update(actor: Actor, id: string, input: UpdateUserInput, loaders?: Pick<Loaders, 'keyChanged'>): Promise<User> {
    const requested: Partial<Pick<User, 'email' | 'name'>> = {};
    if (input.email !== undefined && input.email !== null) requested.email = normalizeEmail(input.email);
    if (input.name !== undefined && input.name !== null) requested.name = normalizeName(input.name);
    let keyIssuedTo: string | null = null;
    const saved = await this.change(
      actor,
      { id, action: 'update', fields: Object.keys(requested) },
      async (manager, user, act) => {
        const changes = Object.fromEntries(
          Object.entries(requested).filter(([field, value]) => user[field as keyof typeof requested] !== value),
        );
        const changed = Object.keys(changes).length > 0;
        const updated = changed ? await updateUser(manager, user.id, changes).catch(duplicateEmailAsConflict) : user;
        // "Edit, then Save" on a user without a key (an imported one) gives them one, when the caller is one
        // who may issue that user a key: a member saving their own name creates none.
        const mayIssueKey = act.ability.can('regenerateAccessKey', user);
        const hasKey =
          mayIssueKey && (await manager.query(`SELECT 1 FROM access_keys WHERE user_id = $1`, [user.id])).length > 0;
        const actions = changed ? [AuditAction.USER_UPDATED] : [];
        if (mayIssueKey && !hasKey) {
          if (act.viaReplacedKey) throw new ReplacedKeyError();
          await this.deps.accessKeys.issue(manager, {
            userId: user.id,
            organizationId: user.organizationId,
            createdBy: actor.principal.userId,
          });
          actions.push(AuditAction.ACCESS_KEY_CREATED);
          keyIssuedTo = user.id;
        }
        if (actions.length > 0) await this.record(manager, actor, user, ...actions);
        return updated;
      },
    );
    // Committed: the request's later reads of this user's key see the key issued, not the none read before.
    if (keyIssuedTo !== null) loaders?.keyChanged(keyIssuedTo);
    return saved;
  }

  /**
   * setUserRole: gives user `id` the role `role` (ADMIN of the organization only), audited as USER_ROLE_CHANGED;
   * the same role again changes nothing. The user's cached credentials are evicted, so the new role applies to
   * their next request.
   * @throws NotFoundError, ForbiddenError, ConflictError (the organization's last active ADMIN would be demoted),
   *   BadInputError (malformed id), or the act's refusal; see `change`.
   */
  async setRole(actor: Actor, id: string, role: Role): Promise<User> {
    return this.change(actor, { id, action: 'setRole' }, async (manager, user) => {
      if (user.role === role) return user;
      if (user.role === Role.ADMIN) await this.keepAnActiveAdmin(manager, user);
      const updated = await updateUser(manager, user.id, { role });
      await this.record(manager, actor, user, AuditAction.USER_ROLE_CHANGED);
      return updated;
    });
  }

  /**
   * deactivateUser / reactivateUser (ADMIN of the organization only), audited as USER_DEACTIVATED or
   * USER_REACTIVATED; the same state again changes nothing. Deactivating ends all the user's sessions (not brought
   * back by reactivation), and their key stops authenticating at once (cache evicted after the commit).
   * @throws NotFoundError, ForbiddenError, ConflictError (the organization's last active ADMIN would be
   *   deactivated), BadInputError (malformed id), or the act's refusal; see `change`.
   */
  async setActive(actor: Actor, id: string, isActive: boolean): Promise<User> {
    return this.change(actor, { id, action: isActive ? 'reactivate' : 'deactivate' }, async (manager, user) => {
      if (user.isActive === isActive) return user;
      if (!isActive && user.role === Role.ADMIN) await this.keepAnActiveAdmin(manager, user);
      const updated = await updateUser(manager, user.id, { is_active: isActive });
      // A deactivated person is signed out everywhere; reactivation does not bring the sessions back.
      if (!isActive) await this.deps.sessions.revokeAll(manager, { userId: user.id });
      await this.record(manager, actor, user, isActive ? AuditAction.USER_REACTIVATED : AuditAction.USER_DEACTIVATED);
      return updated;
    });
  }

  /**
   * The organization row, locked FOR NO KEY UPDATE before anything else by the act (see `change`), serializes
   * the changes that can remove an admin, so two admins can't remove each other at once.
   */
  private async keepAnActiveAdmin(manager: EntityManager, admin: User): Promise<void> {
    if (!admin.isActive) return;
    const [{ others }] = await manager.query(
      `SELECT count(*)::int AS others FROM users
        WHERE organization_id = $1 AND role = 'ADMIN' AND is_active AND id <> $2`,
      [admin.organizationId, admin.id],
    );
    if (others === 0) {
      throw new ConflictError('This is the last active admin of the organization: make another user an admin first.');
    }
  }
}
