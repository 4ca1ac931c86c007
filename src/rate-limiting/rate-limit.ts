import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';

import type { Notifications } from '../db/notifications';
import { clientBucket } from './client-bucket';

export const RATE_LIMIT_CHANNEL = 'crm_access_auth_blocks';
const FLUSH_DELAY_MS = 50;
/** Addresses whose failures this instance counts itself; past this, the oldest windows are forgotten first. */
const MAX_LOCAL_CLIENTS = 100_000;
/**
 * Blocks recorded since the last sweep of ended ones, at least: an address that is blocked and never comes back
 * (and every address another instance announces) would otherwise stay in memory for good. The sweep walks
 * every block, so it waits for as many new ones as were left after the last sweep: constant work per block.
 */
const MIN_BLOCKS_BETWEEN_SWEEPS = 1000;
/** How often an instance deletes the rows of windows that have ended (they count for nothing). */
const PRUNE_INTERVAL_MS = 10 * 60_000;
/**
 * Windows and blocks are kept on the monotonic clock (ms, `performance.now()`), so a step of the wall clock
 * neither lifts a block nor makes a window last for ever. Ends that come from the database arrive as what is
 * left of them by the database's clock.
 */
const monotonicNow = (): number => performance.now();

export interface RateLimitSettings {
  /** Failed authentications a client address may make in one window. */
  readonly maxFailures: number;
  readonly windowSeconds: number;
}

/**
 * Counts failed authentications per client address in PostgreSQL (shared by every instance), and refuses
 * a blocked address from memory: a blocked request costs no query and never reaches a credential lookup.
 * Failures are written in small batches off the request path; a block is announced to the other
 * instances by NOTIFY and reloaded from the table after a restart or a lost connection. Each instance also
 * counts its own failures as they happen, so a burst (many logins in one request, or at once) is stopped
 * at the limit without waiting for the database.
 *
 * Expensive checks (a password verification, the lookup of an unknown key or session) are counted before
 * they run: each first reserves one of the address's attempts, and the address's failures in the window
 * plus its reservations in flight stay below the limit, so however many requests arrive at once, at most
 * `maxFailures` checks run per window on one instance. A success gives its attempt back; a failure keeps it.
 *
 * `client` is the request's address; it is counted by its bucket (see clientBucket: an IPv6 address by its /64).
 */
export class AuthRateLimiter {
  private readonly blockedUntil = new Map<string, number>();
  /** Blocks recorded since ended ones were last deleted from blockedUntil, and how many to wait for. */
  private blocksSinceSweep = 0;
  private blocksBeforeSweep = MIN_BLOCKS_BETWEEN_SWEEPS;
  /** This instance's failures per address in the current window, in order of the window's start. */
  private readonly local = new Map<string, { failures: number; windowEndsMs: number }>();
  /** Reserved attempts per address whose checks are still running. */
  private readonly reserved = new Map<string, number>();
  private pending = new Map<string, number>();
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private prunedAtMs = -Infinity;

  constructor(
    private readonly deps: {
      dataSource: DataSource;
      notifications: Notifications;
      settings: RateLimitSettings;
      logger: Logger;
    },
  ) {
    deps.notifications.on(RATE_LIMIT_CHANNEL, (payload) => this.learn(payload));
    deps.notifications.onConnect(() => this.loadBlocks());
  }

  /** Addresses (buckets) this instance holds a block for, ended ones not yet swept included (for tests). */
  get blockedClients(): number {
    return this.blockedUntil.size;
  }

  /** Seconds until the address may try again, or 0 when it is not blocked. */
  retryAfterSeconds(address: string): number {
    // Nearly always: no address is blocked, and the address need not be bucketed.
    if (this.blockedUntil.size === 0) return 0;
    const client = clientBucket(address);
    const until = this.blockedUntil.get(client);
    if (until === undefined) return 0;
    const remainingMs = until - monotonicNow();
    if (remainingMs <= 0) {
      this.blockedUntil.delete(client);
      return 0;
    }
    return Math.ceil(remainingMs / 1000);
  }

  /**
   * Reserves one attempt of the address for an expensive check about to run. Returns 0 when reserved (then
   * call `release` exactly once), else the seconds after which to try again: the address is blocked, or its
   * failures plus the checks it has under way already reach the limit.
   */
  reserve(address: string): number {
    const client = clientBucket(address);
    const blockedSeconds = this.retryAfterSeconds(client);
    if (blockedSeconds > 0) return blockedSeconds;
    const now = monotonicNow();
    const counted = this.local.get(client);
    const failures = counted && counted.windowEndsMs > now ? counted.failures : 0;
    const reserved = this.reserved.get(client) ?? 0;
    // Checks under way may still succeed: ask for a second; failures alone reaching the limit block the address.
    if (failures + reserved >= this.deps.settings.maxFailures) return 1;
    this.reserved.set(client, reserved + 1);
    return 0;
  }

  /** Ends a reservation: a failed check becomes a counted failure, any other outcome gives the attempt back. */
  release(address: string, outcome: { failed: boolean }): void {
    const client = clientBucket(address);
    const left = (this.reserved.get(client) ?? 1) - 1;
    if (left > 0) this.reserved.set(client, left);
    else this.reserved.delete(client);
    if (outcome.failed) this.recordFailure(client);
  }

  /** Counts one failure; written with others a moment later, so the failing request itself waits for nothing. */
  recordFailure(address: string): void {
    const client = clientBucket(address);
    this.pending.set(client, (this.pending.get(client) ?? 0) + 1);
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
    const now = monotonicNow();
    const counted = this.countLocally(client, now);
    if (counted.failures >= this.deps.settings.maxFailures) this.block(client, counted.windowEndsMs - now);
  }

  private countLocally(client: string, now: number): { failures: number; windowEndsMs: number } {
    let counted = this.local.get(client);
    if (!counted || counted.windowEndsMs <= now) {
      this.local.delete(client);
      counted = { failures: 0, windowEndsMs: now + this.deps.settings.windowSeconds * 1000 };
      this.local.set(client, counted);
      for (const [oldest, window] of this.local) {
        if (window.windowEndsMs > now && this.local.size <= MAX_LOCAL_CLIENTS) break;
        this.local.delete(oldest);
      }
    }
    counted.failures++;
    return counted;
  }

  /** Writes every pending failure in one statement; blocks that result are kept and announced. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.write(batch).finally(() => (this.flushing = null));
    await this.flushing;
    if (monotonicNow() - this.prunedAtMs >= PRUNE_INTERVAL_MS) await this.prune();
  }

  /** Deletes windows that have ended: every address that ever failed would otherwise keep a row for good. */
  private async prune(): Promise<void> {
    this.prunedAtMs = monotonicNow();
    try {
      await this.deps.dataSource.query(
        `DELETE FROM auth_failures WHERE window_started_at <= now() - make_interval(secs => $1)`,
        [this.deps.settings.windowSeconds],
      );
    } catch (error) {
      this.deps.logger.warn({ err: error }, 'could not delete ended rate-limit windows');
    }
  }

  private async write(batch: Map<string, number>): Promise<void> {
    const { dataSource, settings } = this.deps;
    try {
      const rows: Array<{ client: string; failures: number; remaining_ms: number | null }> = await dataSource.query(
        `WITH counted AS (
           INSERT INTO auth_failures AS f (client, window_started_at, failures)
           SELECT client, now(), n FROM unnest($1::text[], $2::int[]) AS t(client, n)
           ON CONFLICT (client) DO UPDATE SET
             failures = CASE WHEN f.window_started_at <= now() - make_interval(secs => $3)
                             THEN EXCLUDED.failures ELSE f.failures + EXCLUDED.failures END,
             window_started_at = CASE WHEN f.window_started_at <= now() - make_interval(secs => $3)
                                      THEN now() ELSE f.window_started_at END
           RETURNING client, failures, window_started_at
         ), blocked AS (
           SELECT client, window_started_at + make_interval(secs => $3) AS until FROM counted WHERE failures >= $4
         ), announced AS (
           SELECT client, until, pg_notify($5, json_build_object(
             'client', client, 'until', until, 'remainingMs', extract(epoch FROM until - now()) * 1000)::text) FROM blocked
         )
         SELECT c.client, c.failures, (extract(epoch FROM a.until - now()) * 1000)::float8 AS remaining_ms
           FROM counted c LEFT JOIN announced a USING (client)`,
        [[...batch.keys()], [...batch.values()], settings.windowSeconds, settings.maxFailures, RATE_LIMIT_CHANNEL],
      );
      for (const row of rows) {
        if (row.remaining_ms !== null) this.block(row.client, row.remaining_ms);
        this.learnCount(row.client, row.failures);
      }
    } catch (error) {
      // Losing a few counts while the database is away is better than failing the request that counted them.
      this.deps.logger.warn({ err: error }, 'could not record failed authentications');
    }
  }

  /**
   * Takes in the shared count of the address's failures (every instance's): this instance's next
   * reservations then see them, so across instances the overshoot is what the table had not yet counted.
   */
  private learnCount(client: string, shared: number): void {
    const counted = this.local.get(client);
    if (!counted || counted.windowEndsMs <= monotonicNow()) return;
    counted.failures = Math.max(counted.failures, shared + (this.pending.get(client) ?? 0));
  }

  /** Blocks the address for `remainingMs` from now (extending a block, never shortening it). */
  private block(client: string, remainingMs: number): void {
    // Already over (announced late, or by a clock that disagrees): nothing to refuse.
    if (!(remainingMs > 0)) return;
    const now = monotonicNow();
    const untilMs = now + remainingMs;
    if (untilMs <= (this.blockedUntil.get(client) ?? -Infinity)) return;
    this.blockedUntil.set(client, untilMs);
    if (++this.blocksSinceSweep < this.blocksBeforeSweep) return;
    for (const [blocked, endMs] of this.blockedUntil) if (endMs <= now) this.blockedUntil.delete(blocked);
    this.blocksSinceSweep = 0;
    this.blocksBeforeSweep = Math.max(MIN_BLOCKS_BETWEEN_SWEEPS, this.blockedUntil.size);
  }

  private learn(payload: string): void {
    const { client, until, remainingMs } = JSON.parse(payload) as {
      client: string;
      until: string;
      remainingMs?: number;
    };
    // An instance of an older release announces the end only (compared with this host's wall clock).
    this.block(client, typeof remainingMs === 'number' ? remainingMs : new Date(until).getTime() - Date.now());
  }

  private async loadBlocks(): Promise<void> {
    const { dataSource, settings } = this.deps;
    const rows: Array<{ client: string; remaining_ms: number }> = await dataSource.query(
      `SELECT client, (extract(epoch FROM window_started_at + make_interval(secs => $1) - now()) * 1000)::float8 AS remaining_ms
         FROM auth_failures
        WHERE failures >= $2 AND window_started_at > now() - make_interval(secs => $1)`,
      [settings.windowSeconds, settings.maxFailures],
    );
    for (const row of rows) this.block(row.client, row.remaining_ms);
    // Not awaited: the auth cache comes back after this handler, and the clean-up need not hold it up.
    void this.prune();
  }
}
