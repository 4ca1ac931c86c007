import type { ApolloServerPlugin } from '@apollo/server';
import { Client } from 'pg';

import { Metrics } from '../../src/metrics';
import { createOrganization, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { parseSamples } from '../helpers/prometheus';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The per-request plumbing of c6fc908 attacked on the real app: synchronous hooks (requestListenersPlugin), the
 * synchronous context function, OperationsInFlight.track's `then(end, end)` and the hand-counted duration histogram.
 */
const ME = '{ me { id } }';
const DURATION = 'crm_access_graphql_request_duration_seconds_count';

async function samples(app: TestApp): Promise<Map<string, number>> {
  return parseSamples(await (await fetch(app.app.metricsUrl!)).text());
}
const series = (operation: string, outcome: string) => `${DURATION}{operation="${operation}",outcome="${outcome}"}`;
const delta = (after: Map<string, number>, before: Map<string, number>, key: string) =>
  (after.get(key) ?? 0) - (before.get(key) ?? 0);

describe('plumbing: hooks, context and metrics', () => {
  let app: TestApp;
  let admin: TestUser;
  const resolvedOperations: string[] = [];
  // A plugin after ours (as startTestApp's plugins are): it sees each operation Apollo resolves.
  const witness: ApolloServerPlugin = {
    async requestDidStart() {
      return {
        async didResolveOperation({ operation }) {
          resolvedOperations.push(operation?.name?.value ?? '?');
        },
      };
    },
  };

  beforeAll(async () => {
    app = await startTestApp({ env: { METRICS_PORT: '0' }, plugins: [witness] });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it("a refusal thrown by our operation checks still lets a later plugin's didResolveOperation run, as a rejection did", async () => {
    resolvedOperations.length = 0;
    const refused = await app.gql('query tooBig { users(first: 100000) { edges { node { id } } } }', {
      key: admin.key,
    });
    expect(refused.status).toBe(400);
    const fine = await app.gql('query fine { me { id } }', { key: admin.key });
    expect(fine.status).toBe(200);
    // On efbc970 (async hooks) Apollo's Promise.all called every listener's hook before the rejection ended the
    // stage: ['tooBig', 'fine']. A hook that throws at once stops Apollo's `map` before the later listeners.
    expect(resolvedOperations).toEqual(['tooBig', 'fine']);
  });

  it('an error thrown while building the context is answered as a 500 and counted as a server error', async () => {
    const before = await samples(app);
    const track = jest.spyOn(Metrics.prototype, 'track').mockImplementationOnce(() => {
      throw new Error('context boom');
    });
    try {
      const failed = await app.gql(ME, { key: admin.key });
      expect(failed.status).toBe(500);
      expect(failed.body.errors).toHaveLength(1);
      expect(failed.body.errors![0].message).not.toContain('context boom');
    } finally {
      track.mockRestore();
    }
    expect((await app.gql(ME, { key: admin.key })).status).toBe(200);
    const after = await samples(app);
    expect(delta(after, before, series('none', 'server_error'))).toBe(1);
    expect(delta(after, before, series('query', 'success'))).toBe(1);
  });

  it('counts a mix of outcomes exactly: success, graphql_error, client_error', async () => {
    const before = await samples(app);
    expect((await app.gql(ME, { key: admin.key })).status).toBe(200);
    expect((await app.gql('mutation { __typename }', { key: admin.key })).status).toBe(200);
    const missing = await app.gql('query ($id: ID!) { user(id: $id) { id } }', {
      key: admin.key,
      variables: { id: '00000000-0000-4000-8000-000000000000' },
    });
    expect(missing.status).toBe(200);
    expect(missing.body.errors).toBeDefined();
    expect((await app.gql('{ me { nope } }', { key: admin.key })).status).toBe(400);
    expect((await app.gql('{ users(first: 100000) { edges { node { id } } } }', { key: admin.key })).status).toBe(400);
    const after = await samples(app);
    expect(delta(after, before, series('query', 'success'))).toBe(1);
    expect(delta(after, before, series('mutation', 'success'))).toBe(1);
    expect(delta(after, before, series('query', 'graphql_error'))).toBe(1);
    expect(
      delta(after, before, series('none', 'client_error')) + delta(after, before, series('query', 'client_error')),
    ).toBe(2);
  });

  it('many concurrent requests: every one counted once in the histogram, the buckets cumulative', async () => {
    const before = await samples(app);
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        app.gql(i % 3 === 0 ? '{ users(first: 100000) { edges { node { id } } } }' : ME, { key: admin.key }),
      ).map((p) => p.then((r) => r.status)),
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(40);
    const after = await samples(app);
    expect(delta(after, before, series('query', 'success'))).toBe(40);
    const inf = (outcome: string) =>
      `crm_access_graphql_request_duration_seconds_bucket{le="+Inf",operation="query",outcome="${outcome}"}`;
    expect(after.get(inf('success'))).toBe(after.get(series('query', 'success')));
    const refused =
      delta(after, before, series('query', 'client_error')) + delta(after, before, series('none', 'client_error'));
    expect(refused).toBe(20);
  });
  it('counts a 503 (the statement of a page cut off by the database) as a server error of its query, beside a success', async () => {
    expect((await app.gql(ME, { key: admin.key })).status).toBe(200); // the key is cached from here on
    const before = await samples(app);
    const locker = new Client({ connectionString: app.databaseUrl });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      const page = app.gql('{ users(first: 5) { edges { node { id } } } }', { key: admin.key });
      await waitForLockWaiters(app, 1);
      await locker.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      );
      const cut = await page;
      expect(cut.status).toBe(503);
      expect(cut.headers.get('retry-after')).not.toBeNull();
      expect(cut.body.errors![0].extensions!.code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    expect((await app.gql(ME, { key: admin.key })).status).toBe(200);
    const after = await samples(app);
    expect(delta(after, before, series('query', 'server_error'))).toBe(1);
    expect(delta(after, before, series('query', 'success'))).toBe(1);
  });
});
