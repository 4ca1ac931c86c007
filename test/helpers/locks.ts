import { INSERT_IF_CONFIRMED } from '../../src/authorization/authority';
import type { TestApp } from './test-app';

/**
 * Resolves once at least `count` statements of the app's database are waiting for a lock another transaction
 * holds: how a test knows that the other side of a race is queued behind the window it holds open.
 */
export async function waitForLockWaiters(app: TestApp, count: number, timeoutMs = 15_000): Promise<void> {
  await waitForWaiters(app, { count, timeoutMs });
}

/**
 * Resolves once a statement of the app's database waits for a lock held by the backend `by` (a
 * pg_backend_pid), or by a transaction other than `notBy`'s: how a test knows that a waiter queued behind the
 * lock a second connection holds, or, once that connection let go, moved on to queue behind the app's.
 */
export async function waitForBlockedStatement(
  app: TestApp,
  params: { by: number } | { notBy: number },
  timeoutMs = 15_000,
): Promise<void> {
  await waitForWaiters(app, {
    count: 1,
    timeoutMs,
    by: 'by' in params ? params.by : null,
    notBy: 'notBy' in params ? params.notBy : null,
  });
}

/**
 * The views statements (Authority.insertIfConfirmed) waiting for a lock now, each as its backend and start time:
 * the same list before and after another act shows that act went on while they waited, not once a statement
 * timeout had ended one (pg_stat_activity holds the first track_activity_query_size bytes of a statement).
 */
export async function waitingViewsStatements(app: TestApp): Promise<string[]> {
  const rows: Array<{ statement: string }> = await app.dataSource.query(
    `SELECT pid || ' ' || query_start AS statement FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND query <> '' AND starts_with($1, query)`,
    [INSERT_IF_CONFIRMED],
  );
  return rows.map((row) => row.statement);
}

async function waitForWaiters(
  app: TestApp,
  params: { count: number; timeoutMs: number; by?: number | null; notBy?: number | null },
): Promise<void> {
  const deadline = Date.now() + params.timeoutMs;
  for (;;) {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'
          AND ($1::int IS NULL OR $1::int = ANY(pg_blocking_pids(pid)))
          AND ($2::int IS NULL OR (cardinality(pg_blocking_pids(pid)) > 0 AND NOT $2::int = ANY(pg_blocking_pids(pid))))`,
      [params.by ?? null, params.notBy ?? null],
    );
    if (n >= params.count) return;
    if (Date.now() > deadline) throw new Error(`${n} of ${params.count} statements waited for a lock`);
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
