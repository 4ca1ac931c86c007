import type { TestApp } from './test-app';

/**
 * Resolves once the app's LISTEN connection has answered a heartbeat sent after this call: PostgreSQL delivers
 * the notifications of every transaction committed before the heartbeat ahead of its answer, so every change
 * committed before the call (an operator's SQL included) has reached the app's caches. How a test waits for a
 * change made outside the service, with no sleep.
 */
export function heardEverythingCommitted(app: TestApp): Promise<void> {
  const after = performance.now();
  return new Promise((resolve) => {
    app.services.notifications.onHeartbeat((sentAtMs) => {
      if (sentAtMs > after) resolve();
    });
  });
}
