/**
 * The one clock that key expiry is decided by (the `expires_at` a key is issued with, the lookup's comparison,
 * the auth cache's comparison, the act-time re-check and the expiring-soon filter). Injected, so a test can move
 * time forward and watch keys expire without waiting; production uses the system clock. Grace periods and
 * sessions are still measured by PostgreSQL's clock, as before.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * SQL for a key expiry instant (`expires_at`, or what is written to it) as the clock and JavaScript dates see
 * it: whole milliseconds (PostgreSQL keeps microseconds; a Date drops them). Every comparison of an expiry
 * with the clock, and every expiry computed in SQL, goes through this, so the lookup, the auth cache, the
 * act-time check and the expiring-soon filter agree at the very instant `accessKeyInfo.expiresAt` shows.
 */
export function expiryMs(sqlExpression: string): string {
  return `date_trunc('milliseconds', ${sqlExpression})`;
}
