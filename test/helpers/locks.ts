import type { TestApp } from './test-app';

/**
 * Resolves once at least `count` statements of the app's database are waiting for a lock another transaction
 * holds: how a test knows that the other side of a race is queued behind the window it holds open.
 */
export async function waitForLockWaiters(app: TestApp, count: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (n >= count) return;
    if (Date.now() > deadline) throw new Error(`${n} of ${count} statements waited for a lock`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Two users whose key rows lie in the heap in the reverse order of their ids: `[first, second]` sorted by id,
 * with first's live version after second's, so that a statement locking rows as it scans them takes second
 * first while one locking by user id takes first first (the deadlock cases). `relocate` rewrites the smaller
 * id's key row (an update usually puts the new version at the end of its page; where the page has no room
 * PostgreSQL may use an earlier one, so a new pair is made, at most `tries` times). `made` counts the users made.
 * @throws Error when no pair was arranged in `tries`.
 */
export async function keyRowsInReverseIdOrder<U extends { id: string }>(
  app: TestApp,
  params: { makeUser: () => Promise<U>; relocate: (smaller: U) => Promise<void>; tries?: number },
): Promise<{ first: U; second: U; made: number }> {
  const tries = params.tries ?? 20;
  for (let attempt = 1; attempt <= tries; attempt++) {
    const [smaller, larger] = (await Promise.all([params.makeUser(), params.makeUser()])).sort((x, y) =>
      x.id < y.id ? -1 : 1,
    );
    await params.relocate(smaller);
    const physical = await app.dataSource.query(
      `SELECT user_id FROM access_keys WHERE user_id = ANY($1) ORDER BY ctid`,
      [[smaller.id, larger.id]],
    );
    if (physical[0].user_id === larger.id) return { first: smaller, second: larger, made: attempt * 2 };
  }
  throw new Error(`no pair of key rows in reverse id order after ${tries} tries`);
}
