import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import type { Notifications } from '../db/notifications';

export const RATE_LIMIT_CHANNEL = 'crm_access_auth_blocks';
const FLUSH_DELAY_MS = 50;
/** Addresses whose failures this instance counts itself; past this, the oldest windows are forgotten first. */
const MAX_LOCAL_CLIENTS = 100_000;
/** How often an instance deletes the rows of windows that have ended (they count for nothing). */
const PRUNE_INTERVAL_MS = 10 * 60_000;

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
 */
export class AuthRateLimiter {
  private readonly blockedUntil = new Map<string, number>();
  /** This instance's failures per address in the current window, in order of the window's start. */
  private readonly local = new Map<string, { failures: number; windowEndsMs: number }>();
  private pending = new Map<string, number>();
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private prunedAtMs = 0;

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

  /** Seconds until the address may try again, or 0 when it is not blocked. */
  retryAfterSeconds(client: string): number {
    const until = this.blockedUntil.get(client);
    if (until === undefined) return 0;
    const remainingMs = until - Date.now();
    if (remainingMs <= 0) {
      this.blockedUntil.delete(client);
      return 0;
    }
    return Math.ceil(remainingMs / 1000);
  }

  /** Counts one failure; written with others a moment later, so the failing request itself waits for nothing. */
  recordFailure(client: string): void {
    this.pending.set(client, (this.pending.get(client) ?? 0) + 1);
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
    const counted = this.countLocally(client, Date.now());
    if (counted.failures >= this.deps.settings.maxFailures) this.block(client, counted.windowEndsMs);
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
    if (Date.now() - this.prunedAtMs >= PRUNE_INTERVAL_MS) await this.prune();
  }

  /** Deletes windows that have ended: every address that ever failed would otherwise keep a row for good. */
  private async prune(): Promise<void> {
    this.prunedAtMs = Date.now();
    try {
      await this.deps.dataSource.query(`DELETE FROM auth_failures WHERE window_started_at <= now() - make_interval(secs => $1)`, [
        this.deps.settings.windowSeconds,
      ]);
    } catch (error) {
      this.deps.logger.warn({ err: error }, 'could not delete ended rate-limit windows');
    }
  }

  private async write(batch: Map<string, number>): Promise<void> {
    const { dataSource, settings } = this.deps;
    try {
      const rows: Array<{ client: string; until: Date }> = await dataSource.query(
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
         )
         SELECT client, until, pg_notify($5, json_build_object('client', client, 'until', until)::text) FROM blocked`,
        [[...batch.keys()], [...batch.values()], settings.windowSeconds, settings.maxFailures, RATE_LIMIT_CHANNEL],
      );
      for (const row of rows) this.block(row.client, new Date(row.until).getTime());
    } catch (error) {
      // Losing a few counts while the database is away is better than failing the request that counted them.
      this.deps.logger.warn({ err: error }, 'could not record failed authentications');
    }
  }

  private block(client: string, untilMs: number): void {
    if (untilMs > (this.blockedUntil.get(client) ?? 0)) this.blockedUntil.set(client, untilMs);
  }

  private learn(payload: string): void {
    const { client, until } = JSON.parse(payload) as { client: string; until: string };
    this.block(client, new Date(until).getTime());
  }

  private async loadBlocks(): Promise<void> {
    const { dataSource, settings } = this.deps;
    const rows: Array<{ client: string; until: Date }> = await dataSource.query(
      `SELECT client, window_started_at + make_interval(secs => $1) AS until FROM auth_failures
        WHERE failures >= $2 AND window_started_at > now() - make_interval(secs => $1)`,
      [settings.windowSeconds, settings.maxFailures],
    );
    for (const row of rows) this.block(row.client, new Date(row.until).getTime());
    // Not awaited: the auth cache comes back after this handler, and the clean-up need not hold it up.
    void this.prune();
  }
}
