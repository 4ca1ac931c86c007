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
