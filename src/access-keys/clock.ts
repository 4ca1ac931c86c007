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

/**
 * SQL for the service's clock as a statement reads a row: `parameter` (a statement parameter, e.g. `$3`), the
 * clock's reading when the statement was sent, moved on by the time PostgreSQL counts since the statement began.
 * The parameter alone is the moment before the statement waits for rows other transactions hold: a key that
 * expired during that wait would count as working. statement_timestamp() is set when execution begins, so a
 * wait for a table lock taken at Bind is not counted: a statement that may wait for one takes it first, or
 * counts from now() when it is its own transaction (Authority's SERVICE_CLOCK_AT_CHECK).
 */
export function serviceClockAtRow(parameter: string): string {
  return `(${parameter}::timestamptz + (clock_timestamp() - statement_timestamp()))`;
}
