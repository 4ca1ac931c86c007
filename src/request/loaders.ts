import DataLoader from 'dataloader';
import type { DataSource } from 'typeorm';

import type { AccessKey } from '../access-keys/access-key.entity';
import { scopeOf } from '../authorization/abilities';
import { runPrepared, runPreparedForIds } from '../db/prepared';
import { SqlWhere } from '../db/scope';
import { Organization } from '../organizations/organization.entity';
import type { User } from '../users/user.entity';
import { USER_COLUMNS, USER_SCOPE_COLUMNS, userFromRow, type UserRow } from '../users/user.queries';
import type { Actor } from './actor';

/** Per-request batching: a list of N users costs one query per kind of related row, not N. */
export interface Loaders {
  organization: DataLoader<string, Organization | null>;
  accessKey: DataLoader<string, AccessKey | null>;
  /** Users the caller may read, by id (the actors and targets of audit events). */
  user: DataLoader<string, User | null>;
  /**
   * A user's key in plain text, revealed at most once per user per request: a whole page of keys is
   * decrypted in one batch and its ACCESS_KEY_VIEWED events are committed in one insert (with the actor's
   * authority confirmed in that transaction, see KeyViewWriter) before any key of the batch is returned.
   * The key returned is the user's key when its view committed: one replaced after the request read it (a
   * regeneration committed in between) is answered with the key that replaced it. Null when the user has no
   * key. The caller checks that the actor may read the key first.
   */
  revealedKey: DataLoader<User, string | null, string>;
  /**
   * Hands revealedKey a user's key ciphertext as this request last read or wrote it (UserService.list reads
   * only that for a page asking for `accessKey` alone; a regeneration), null when the user has no key. Users
   * not handed one are read through `accessKey`. Only for users the caller may read.
   */
  primeKeyCiphertext(userId: string, ciphertext: Buffer | null): void;
  /**
   * The user's key as revealedKey already returned it in this request (its view committed), null when the
   * user has no key; undefined when it has not (yet): then load it through revealedKey. Lets a page whose keys
   * were revealed together answer each `accessKey` without a promise per row.
   */
  revealedKeyOf(user: User): string | null | undefined;
  /**
   * Reveals the keys of `users` as revealedKey does (one batch, views committed first, each user at most once
   * per request: those revealed or being revealed already are waited for, not revealed again), without a
   * promise per user: a page's keys are one promise until a field asks for one by revealedKey. Resolves when
   * every one is settled; never rejects: a key that could not be revealed is the error revealedKey.load gives
   * for it. The caller checks that the actor may read each key first.
   */
  revealAll(users: readonly User[]): Promise<void>;
  /**
   * A key this request issued to `user` (a regeneration): later reads in the request show exactly this key
   * (its view recorded with the act), not an older one read earlier nor one issued by someone else since.
   */
  keyIssued(user: User, issued: { key: string; row: AccessKey }): void;
  /**
   * An act of this request replaced or created `userId`'s key without revealing it (a leak report revokes it and
   * issues another; "Edit, then Save" issues a missing one): what the request read or revealed of that key is
   * forgotten, so a later `accessKey` reveals the key as it now is (with its own view, its authority checked
   * again) and `accessKeyInfo` describes it, never the revoked key or the absence of one read before the act.
   */
  keyChanged(userId: string): void;
}

/** What a reveal decrypts: the ciphertext is sealed to its user id (KeyCrypto.encrypt). */
export interface SealedKey {
  readonly userId: string;
  readonly keyCiphertext: Buffer;
}

/**
 * A key a reveal decrypted, as its view is recorded (KeyViewTarget): whose, in which organization, and the user
 * object it was revealed for (on which a page's check granted it: GrantedChecks). One object per key, used
 * both to decrypt and to record the view.
 */
interface ViewedKey extends SealedKey {
  readonly organizationId: string;
  readonly subject: User;
}

/**
 * What the loaders use, and nothing more: the services behind these are wired above this layer
 * (server/services.ts), so the request layer names only the calls it makes.
 */
export interface LoaderDeps {
  readonly dataSource: DataSource;
  readonly accessKeys: {
    findByUserIds(userIds: readonly string[]): Promise<AccessKey[]>;
    /** The key in plain text; throws when it cannot be decrypted. */
    reveal(key: SealedKey): string;
  };
  readonly audit: {
    /**
     * Resolves once the views are committed, with the targets (by index) whose key was replaced since it was
     * read: the key row's ciphertext as the views committed, null when the user has no key now.
     */
    recordKeyViews(actor: Actor, targets: readonly ViewedKey[]): Promise<ReadonlyMap<number, Buffer | null>>;
  };
  readonly metrics: { countKeyReveals(count: number): void };
}

function byId<T>(ids: readonly string[], rows: T[], idOf: (row: T) => string): Array<T | null> {
  const map = new Map(rows.map((row) => [idOf(row), row]));
  return ids.map((id) => map.get(id) ?? null);
}

/** Each loader is made on first use: most requests need none or one of them. */
class RequestLoaders implements Loaders {
  private organizationLoader?: Loaders['organization'];
  private accessKeyLoader?: Loaders['accessKey'];
  private userLoader?: Loaders['user'];
  private revealedKeyLoader?: Loaders['revealedKey'];
  /** revealedKey's cache: its promises, and the page batches' users (RevealCache). */
  private readonly revealCache = new RevealCache();
  private readonly ciphertexts = new Map<string, Buffer | null>();
  /** revealedKey's answers so far, by user id: only those whose views (if any) are committed. */
  private readonly revealed = new Map<string, string | null>();

  constructor(
    private readonly services: LoaderDeps,
    private readonly actor: Actor | null,
  ) {}

  get organization(): Loaders['organization'] {
    return (this.organizationLoader ??= new DataLoader(async (ids) => {
      const rows = await runPreparedForIds<{
        id: string;
        name: string;
        is_active: boolean;
        created_at: Date;
        max_key_age_days: number | null;
      }>(this.services.dataSource, {
        select: 'SELECT id, name, is_active, created_at, max_key_age_days FROM organizations',
        column: 'id',
        ids,
      });
      const organizations = rows.map((row) =>
        Object.assign(new Organization(), {
          id: row.id,
          name: row.name,
          isActive: row.is_active,
          createdAt: row.created_at,
          maxKeyAgeDays: row.max_key_age_days,
        }),
      );
      return byId(ids, organizations, (o) => o.id);
    }));
  }

  get accessKey(): Loaders['accessKey'] {
    return (this.accessKeyLoader ??= new DataLoader(async (userIds) =>
      byId(userIds, await this.services.accessKeys.findByUserIds(userIds), (k) => k.userId),
    ));
  }

  get user(): Loaders['user'] {
    return (this.userLoader ??= new DataLoader(async (ids) => {
      if (!this.actor) return ids.map(() => null);
      const where = new SqlWhere()
        .scope(scopeOf(this.actor.ability, 'read', 'User'), USER_SCOPE_COLUMNS)
        .idIn('u.id', ids);
      const rows = await runPrepared<UserRow>(
        this.services.dataSource,
        `SELECT ${USER_COLUMNS} FROM users u WHERE ${where}`,
        where.values,
      );
      return byId(ids, rows.map(userFromRow), (u) => u.id);
    }));
  }

  get revealedKey(): Loaders['revealedKey'] {
    return (this.revealedKeyLoader ??= new DataLoader<User, string | null, string>((users) => this.reveal(users), {
      cacheKeyFn: userIdOf,
      cacheMap: this.revealCache,
    }));
  }

  primeKeyCiphertext(userId: string, ciphertext: Buffer | null): void {
    this.ciphertexts.set(userId, ciphertext);
  }

  revealedKeyOf(user: User): string | null | undefined {
    return this.revealed.get(user.id);
  }

  async revealAll(users: readonly User[]): Promise<void> {
    const waits = new Set<Promise<unknown>>();
    const fresh: User[] = [];
    const freshIds = new Set<string>();
    for (const user of users) {
      if (this.revealed.has(user.id) || freshIds.has(user.id)) continue;
      const pending = this.revealCache.pending(user.id);
      if (pending) waits.add(pending);
      else {
        fresh.push(user);
        freshIds.add(user.id);
      }
    }
    if (fresh.length > 0) {
      const keys = this.reveal(fresh);
      this.revealCache.addBatch(fresh, keys);
      // As DataLoader does with a batch that fails as a whole (the views' connection lost, say): forgotten, so a
      // field asking for one of these keys starts a new batch. Before revealAll's own wait below settles.
      keys.catch(() => this.revealCache.forgetBatch(fresh, keys));
      waits.add(keys);
    }
    await Promise.allSettled(waits);
  }

  keyChanged(userId: string): void {
    this.accessKeyLoader?.clear(userId);
    this.ciphertexts.delete(userId);
    this.revealCache.delete(userId);
    this.revealed.delete(userId);
  }

  keyIssued(user: User, issued: { key: string; row: AccessKey }): void {
    this.accessKey.clear(user.id).prime(user.id, issued.row);
    this.ciphertexts.set(user.id, issued.row.keyCiphertext);
    this.revealedKey.clear(user).prime(user, issued.key);
    this.revealed.set(user.id, issued.key);
  }

  /**
   * The key ciphertexts of `users` (null: no key): primed ciphertexts, else their rows' through `accessKey`; an
   * Error where a row could not be read.
   */
  private async ciphertextsOf(users: readonly User[]): Promise<Array<Buffer | null | Error>> {
    const sealed: Array<Buffer | null | Error> = new Array(users.length);
    const unprimed: number[] = [];
    for (let i = 0; i < users.length; i++) {
      const ciphertext = this.ciphertexts.get(users[i].id);
      if (ciphertext === undefined) unprimed.push(i);
      else sealed[i] = ciphertext;
    }
    if (unprimed.length > 0) {
      const rows = await this.accessKey.loadMany(unprimed.map((i) => users[i].id));
      for (let j = 0; j < unprimed.length; j++) {
        const row = rows[j];
        sealed[unprimed[j]] = row === null || row instanceof Error ? row : row.keyCiphertext;
      }
    }
    return sealed;
  }

  /** The key in plain text, or the error that kept it from being decrypted (that field's answer). */
  private open(key: SealedKey): string | Error {
    try {
      return this.services.accessKeys.reveal(key);
    } catch (error) {
      return error as Error;
    }
  }

  /**
   * Decrypts first, so a key that cannot be read is not recorded as viewed (that user's field gets the
   * error, the others their keys); then records the views of the decrypted ones and waits for their commit,
   * so if the insert fails, or the actor's authority ended, no key of the batch is returned. A key the views'
   * commit found replaced is answered with the key row's current one (its view is the one just committed),
   * or null when the user has no key now; one that then cannot be decrypted is that field's error. Its key row
   * as read before is forgotten (accessKey reads it again), so a page's accessKeyInfo describes the key shown.
   */
  private async reveal(users: readonly User[]): Promise<Array<string | null | Error>> {
    const { actor, services } = this;
    if (!actor) throw new Error('Key views are recorded for authenticated callers only');
    const sealed = await this.ciphertextsOf(users);
    const keys: Array<string | null | Error> = new Array(users.length);
    const viewed: ViewedKey[] = [];
    /** viewed[j] is users[viewedAt[j]]'s. */
    const viewedAt: number[] = [];
    for (let i = 0; i < users.length; i++) {
      const keyCiphertext = sealed[i];
      if (keyCiphertext === null || keyCiphertext instanceof Error) {
        keys[i] = keyCiphertext;
        continue;
      }
      const user = users[i];
      const key: ViewedKey = { userId: user.id, organizationId: user.organizationId, keyCiphertext, subject: user };
      const opened = this.open(key);
      keys[i] = opened;
      // Not viewed: nothing was revealed. Told by type (here and below), not `instanceof Error`: under jest the
      // errors of node:crypto are instances of another realm's Error.
      if (typeof opened !== 'string') continue;
      viewed.push(key);
      viewedAt.push(i);
    }
    if (viewed.length > 0) {
      const replaced = await services.audit.recordKeyViews(actor, viewed);
      services.metrics.countKeyReveals(viewed.length);
      for (const [j, keyCiphertext] of replaced) {
        const i = viewedAt[j];
        keys[i] = keyCiphertext && this.open({ userId: users[i].id, keyCiphertext });
        // The key row read with the page is the replaced key's: what the request reads of the key from here on
        // (accessKeyInfo's hint, createdAt, leak report) is the current row's, the key shown.
        this.accessKeyLoader?.clear(users[i].id);
      }
    }
    // Committed: from here on the request may answer these keys without waiting (revealedKeyOf).
    for (let i = 0; i < users.length; i++) {
      const key = keys[i];
      if (key === null || typeof key === 'string') this.revealed.set(users[i].id, key);
    }
    return keys;
  }
}

const userIdOf = (user: { readonly id: string }): string => user.id;

/** What a batch of reveals settles to: each user's key in the batch's order, null for no key, or its error. */
type RevealedKeys = Promise<Array<string | null | Error>>;

/**
 * revealedKey's cache (DataLoader's CacheMap, by user id): the promises DataLoader put in it, and the users of
 * the batches revealAll started, each by its place in its batch. A batch user's promise is made from the batch's
 * when DataLoader first asks for it (a field that could not answer from revealedKeyOf): a page of 100 keys
 * keeps one promise alive while its views commit, not 100 and their callbacks.
 */
class RevealCache {
  private readonly promises = new Map<string, Promise<string | null>>();
  private readonly batched = new Map<string, { keys: RevealedKeys; index: number }>();

  /** A user's key in the batch `keys` settles to: its error rejects. */
  private static keyOf(keys: RevealedKeys, index: number): Promise<string | null> {
    return keys.then((settled) => {
      const key = settled[index];
      // Told by type, not `instanceof Error` (see RequestLoaders.reveal).
      if (key === null || typeof key === 'string') return key;
      throw key;
    });
  }

  /** Records `users` (distinct, none in the cache) as revealed by the batch `keys`, in their order. */
  addBatch(users: readonly User[], keys: RevealedKeys): void {
    for (let index = 0; index < users.length; index++) this.batched.set(users[index].id, { keys, index });
  }

  /** What settles when the user's reveal (of a batch or DataLoader's) has: undefined when none was started. */
  pending(userId: string): Promise<unknown> | undefined {
    return this.promises.get(userId) ?? this.batched.get(userId)?.keys;
  }

  /**
   * Forgets `users` of the batch `keys` (and the promises made from it), where no other reveal replaced them:
   * for a batch that failed as a whole.
   */
  forgetBatch(users: readonly User[], keys: RevealedKeys): void {
    for (const { id } of users) {
      if (this.batched.get(id)?.keys !== keys) continue;
      this.batched.delete(id);
      this.promises.delete(id);
    }
  }

  get(userId: string): Promise<string | null> | undefined {
    const promise = this.promises.get(userId);
    if (promise) return promise;
    const batched = this.batched.get(userId);
    if (!batched) return undefined;
    // Kept in `batched` too: forgetBatch tells the promises made from a batch by it.
    const made = RevealCache.keyOf(batched.keys, batched.index);
    this.promises.set(userId, made);
    return made;
  }

  set(userId: string, promise: Promise<string | null>): void {
    this.batched.delete(userId);
    this.promises.set(userId, promise);
  }

  delete(userId: string): void {
    this.batched.delete(userId);
    this.promises.delete(userId);
  }

  clear(): void {
    this.batched.clear();
    this.promises.clear();
  }
}

/** A request's loaders, each made on first use; `actor` null for a request without credentials. */
export function createLoaders(services: LoaderDeps, actor: Actor | null): Loaders {
  return new RequestLoaders(services, actor);
}
