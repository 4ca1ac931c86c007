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
