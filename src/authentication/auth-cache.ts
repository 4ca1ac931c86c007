import type { Principal } from './principal';

export const AUTH_CHANGES_CHANNEL = 'crm_access_auth_changes';

interface Entry {
  readonly principal: Principal;
  readonly expiresAtMs: number;
  /** When the entry last moved to the recent end; refreshed at most once a second, not on every hit. */
  touchedAtMs: number;
}

const TOUCH_INTERVAL_MS = 1000;

/**
 * Every time of the cache (ages, freshness) is on the monotonic clock, in ms: `performance.now()`. A step of the
 * wall clock (an NTP correction, an operator's `date -s`) then moves no deadline: on `Date.now()` a step back
 * of an hour would let the cache answer for an hour after its listener went silent.
 */
const monotonicNow = (): number => performance.now();
/**
 * How long after the send of the listener's last answered heartbeat the cache may still answer. Every change
 * committed before that send has been announced and applied by then (see Notifications), so a revocation is
 * honoured at most this long after it commits, even when the listener's connection hangs without closing.
 */
export const FRESHNESS_MS = 1500;

/**
 * Principals by credential digest (never by the credential itself), bounded in size and age, so a known
 * key or session authenticates without a database round trip. Entries are dropped when PostgreSQL
 * announces a change to their user or organization, and the whole cache is off while that announcement
 * channel is down, or silent for longer than FRESHNESS_MS. `epoch` lets a lookup that raced with a change
 * decline to cache what it read.
 */
export class AuthCache {
  private readonly entries = new Map<string, Entry>();
  private readonly byUser = new Map<string, Set<string>>();
  private readonly byOrganization = new Map<string, Set<string>>();
  private enabled = false;
  /** The cache answers only before this time: the listener's last confirmed heartbeat plus FRESHNESS_MS. */
  private freshUntilMs = 0;
  /** Bumped by every eviction: a lookup that started in an older epoch may have read stale rows. */
  epoch = 0;
  /** Lookups answered and not answered, since start (read by the metrics at scrape time). */
  hits = 0;
  misses = 0;

  constructor(private readonly settings: { maxEntries: number; ttlSeconds: number }) {}

  /** How many credentials are cached now (the metrics' gauge). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * The principal cached under a credential's cache key (KeyCrypto.cacheKey), or undefined when absent,
   * expired (ttlSeconds, or the grace period's or session's end) or when the listener has not proven freshness
   * within FRESHNESS_MS (then the database decides). A hit marks the entry recently used.
   */
  get(digest: string): Principal | undefined {
    const entry = this.entries.get(digest);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    const now = monotonicNow();
    // The listener has not proven recently that every revocation reached this instance: ask the database.
    if (now >= this.freshUntilMs) return undefined;
    if (entry.expiresAtMs <= now) {
      this.misses++;
      this.delete(digest);
      return undefined;
    }
    this.hits++;
    // Map order is insertion order: re-inserting makes this the most recently used.
    if (now - entry.touchedAtMs >= TOUCH_INTERVAL_MS) {
      entry.touchedAtMs = now;
      this.entries.delete(digest);
      this.entries.set(digest, entry);
    }
    return entry.principal;
  }

  /**
   * Caches unless disabled or something changed since `epoch`; `validForMs` caps the age (what is left of a
   * grace period or a session, from the database's clock), in ms from `measuredAtMs` (on the monotonic clock,
   * `performance.now()`: an instant no later than the one the database measured at, such as before its lookup
   * was sent), or from now without it.
   */
  set(
    digest: string,
    principal: Principal,
    params: { epoch: number; validForMs?: number | null; measuredAtMs?: number },
  ): void {
    if (!this.enabled || params.epoch !== this.epoch || this.settings.maxEntries === 0) return;
    const now = monotonicNow();
    const expiresAtMs = Math.min(
      now + this.settings.ttlSeconds * 1000,
      (params.measuredAtMs ?? now) + (params.validForMs ?? Infinity),
    );
    if (expiresAtMs <= now) return;
    this.delete(digest);
    this.entries.set(digest, { principal, expiresAtMs, touchedAtMs: now });
    index(this.byUser, principal.userId, digest);
    index(this.byOrganization, principal.organizationId, digest);
    while (this.entries.size > this.settings.maxEntries) this.delete(this.entries.keys().next().value as string);
  }

  /**
   * Forgets every cached credential of the user, and refuses to cache lookups already under way (epoch):
   * called after a change of the user commits, and on the database's NOTIFY for changes made elsewhere.
   */
  evictUser(userId: string): void {
    this.epoch++;
    for (const digest of this.byUser.get(userId) ?? []) this.delete(digest);
  }

  /**
   * Forgets every cached credential of the organization's users (and refuses lookups under way), after an
   * organization change commits or is announced.
   */
  evictOrganization(organizationId: string): void {
    this.epoch++;
    for (const digest of this.byOrganization.get(organizationId) ?? []) this.delete(digest);
  }

  /** Announcements may have been missed: forget everything and stop caching until `enable`. */
  disable(): void {
    this.enabled = false;
    this.freshUntilMs = 0;
    this.clear();
  }

  /** Starts caching afresh: nothing from before the listener was back is trusted, cached or in flight. */
  enable(): void {
    this.clear();
    this.enabled = true;
    this.confirmFresh(monotonicNow());
  }

  /**
   * Every change committed before `sentAtMs` (on the monotonic clock, `performance.now()`) has been applied: the listener's
   * heartbeat sent then was answered. Entries may be served until FRESHNESS_MS after it.
   */
  confirmFresh(sentAtMs: number): void {
    if (this.enabled) this.freshUntilMs = Math.max(this.freshUntilMs, sentAtMs + FRESHNESS_MS);
  }

  /** Applies a payload of the auth-changes channel; one it cannot read empties the cache rather than guess. */
  applyNotification(payload: string): void {
    let change: { userId?: unknown; organizationId?: unknown };
    try {
      change = JSON.parse(payload) as typeof change;
    } catch {
      change = {};
    }
    const known = typeof change.userId === 'string' || typeof change.organizationId === 'string';
    if (!known) return this.clear();
    if (typeof change.userId === 'string') this.evictUser(change.userId);
    if (typeof change.organizationId === 'string') this.evictOrganization(change.organizationId);
  }

  private clear(): void {
    this.epoch++;
    this.entries.clear();
    this.byUser.clear();
    this.byOrganization.clear();
  }

  private delete(digest: string): void {
    const entry = this.entries.get(digest);
    if (!entry) return;
    this.entries.delete(digest);
    unindex(this.byUser, entry.principal.userId, digest);
    unindex(this.byOrganization, entry.principal.organizationId, digest);
  }
}

function index(map: Map<string, Set<string>>, id: string, digest: string): void {
  const set = map.get(id);
  if (set) set.add(digest);
  else map.set(id, new Set([digest]));
}

function unindex(map: Map<string, Set<string>>, id: string, digest: string): void {
  const set = map.get(id);
  if (!set) return;
  set.delete(digest);
  if (set.size === 0) map.delete(id);
}
