import http from 'node:http';

import type { ApolloServerPlugin } from '@apollo/server';

import { createOrganization } from '../factories/organizations';
import { startTestApp } from '../helpers/test-app';

/** Twenty turns of the event loop, then 'still open': what a close that waits loses a race against. */
const turns = async (): Promise<'still open'> => {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  return 'still open';
};

/** POSTs `query` on a connection of its own that closes after the answer (fetch's keep-alive one would hold close). */
function postOnce(url: string, key: string, query: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'x-access-key': key, connection: 'close' },
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, body }));
      },
    );
    request.on('error', reject);
    request.end(JSON.stringify({ query }));
  });
}

function gate(): { opened: Promise<void>; enter(): void; release(): void; released: Promise<void> } {
  let enter!: () => void;
  let release!: () => void;
  const opened = new Promise<void>((resolve) => (enter = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  return { opened, enter, release, released };
}

/**
 * OperationsInFlight.track (c6fc908: `void handling.then(end, end)` in place of `finally`) under a shutdown: the
 * app's close waits for every /graphql request under way, one held open and one that fails as well, after
 * requests that failed (asynchronously and at once) were each counted out exactly once.
 */
describe('closing while /graphql requests are in flight', () => {
  it('waits for a held request and a failing one, after failed requests were counted out once each', async () => {
    const held = gate();
    const failing = gate();
    const plugin: ApolloServerPlugin = {
      async requestDidStart({ request }) {
        const name = /^query (\w+)/.exec(request.query ?? '')?.[1];
        if (name === 'held') {
          return {
            async didResolveOperation() {
              held.enter();
              await held.released;
            },
          };
        }
        if (name === 'failingLater') {
          return {
            async didResolveOperation() {
              failing.enter();
              await failing.released;
              throw new Error('failing on purpose, during the close');
            },
          };
        }
        if (name === 'failing') {
          return {
            async didResolveOperation() {
              await new Promise((resolve) => setImmediate(resolve));
              throw new Error('failing on purpose');
            },
          };
        }
        if (name === 'failingAtOnce') {
          return {
            didResolveOperation() {
              throw new Error('failing at once');
            },
          } as never;
        }
        return undefined;
      },
    };
    const app = await startTestApp({ plugins: [plugin] });
    try {
      const admin = await createOrganization(app);
      // Were one of these counted out twice, the count would go below zero and the close below would not wait.
      for (const name of ['failing', 'failingAtOnce', 'failing']) {
        const failed = await postOnce(app.url, admin.key, `query ${name} { me { id } }`);
        expect(failed.status).toBe(500);
        expect(JSON.parse(failed.body).errors[0].extensions.code).toBe('INTERNAL_SERVER_ERROR');
      }
      const heldAnswer = postOnce(app.url, admin.key, 'query held { me { id } }');
      const failingAnswer = postOnce(app.url, admin.key, 'query failingLater { me { id } }');
      await Promise.all([held.opened, failing.opened]);

      const closing = app.app.close().then(() => 'closed' as const);
      expect(await Promise.race([closing, turns()])).toBe('still open');
      failing.release();
      expect((await failingAnswer).status).toBe(500);
      // The failed one is counted out; the held one still holds the close.
      expect(await Promise.race([closing, turns()])).toBe('still open');
      held.release();
      expect((await heldAnswer).status).toBe(200);
      expect(await closing).toBe('closed');
    } finally {
      failing.release();
      held.release();
      await app.close();
    }
  }, 20_000);
});
