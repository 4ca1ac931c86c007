import type { ApolloServerPlugin } from '@apollo/server';

import { createOrganization } from '../factories/organizations';
import { until } from '../helpers/own-postgres';
import { startTestApp } from '../helpers/test-app';

/**
 * A shutdown (SIGTERM: the app closes, then the services and the database pool) while a request whose client has
 * already gone is still running: the app waits for its operation to end before it reports closed, so the request
 * does not meet a closed pool (one "unexpected error in a resolver" line per row of a page) and nothing is cut.
 */
describe('closing while an operation of a departed client still runs', () => {
  it('waits for the operation, then closes; no error-level line', async () => {
    let entered!: () => void;
    const enteredGate = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const releaseGate = new Promise<void>((resolve) => (release = resolve));
    // Holds the page after its operation is resolved and before any resolver runs (no connection is held).
    const gate: ApolloServerPlugin = {
      async requestDidStart({ request }) {
        if (!request.query?.includes('gatedPage')) return;
        return {
          async didResolveOperation() {
            entered();
            await releaseGate;
          },
        };
      },
    };
    const app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info' }, plugins: [gate] });
    const admin = await createOrganization(app);
    const client = new AbortController();
    const page = fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-access-key': admin.key },
      body: JSON.stringify({ query: 'query gatedPage { users(first: 10) { edges { node { id email accessKey } } } }' }),
      signal: client.signal,
    }).catch(() => 'aborted');
    await enteredGate;
    client.abort();
    expect(await page).toBe('aborted');

    const closing = app.app.close().then(() => 'closed' as const);
    // The client's connection is gone and the server no longer listens: nothing but the operation holds the app open.
    await until(
      () =>
        new Promise<boolean>((resolve) =>
          app.app.server.getConnections((error, count) => resolve(!error && count === 0 && !app.app.server.listening)),
        ),
      (idle) => idle,
    );
    const turns = async () => {
      for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
      return 'still open' as const;
    };
    const first = await Promise.race([closing, turns()]);
    release();
    expect(await closing).toBe('closed');
    await app.close();
    expect(first).toBe('still open');
    const errors = app.logs
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((l) => l.level >= 50);
    expect(errors).toEqual([]);
  });
});
