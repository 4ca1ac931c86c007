import { generateAccessKey } from '../src/access-keys/key-format';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from './factories/organizations';
import { postFrom } from './helpers/http';
import { parseSamples } from './helpers/prometheus';
import { startTestApp, type TestApp } from './helpers/test-app';

async function scrape(app: TestApp): Promise<{ text: string; samples: Map<string, number> }> {
  const response = await fetch(app.app.metricsUrl!);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  return { text, samples: parseSamples(text) };
}

const ME = '{ me { id } }';

describe('Prometheus metrics on METRICS_PORT', () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { METRICS_PORT: '0', AUTH_FAILURE_LIMIT: '3' } });
    admin = await createOrganization(app);
    member = await createUser(app, admin, { password: TEST_PASSWORD });
    // The admin's key is cached from here on: nothing in the mix below changes the admin or the organization.
    await app.gql(ME, { key: admin.key });
    await app.gql(ME, { key: admin.key });
  });
  afterAll(() => app.close());

  it('counts a scripted mix exactly: keys good and bad, a blocked address, a session, reveals and a regeneration', async () => {
    const before = (await scrape(app)).samples;
    const from = (localAddress: string, headers: Record<string, string>) =>
      postFrom({ url: app.url, localAddress, query: ME, headers });

    // A good key, new to the cache: one miss, then two hits.
    for (let i = 0; i < 3; i++) expect((await app.gql(ME, { key: member.key })).status).toBe(200);
    // Bad keys: two unknown well-formed ones (cache misses, then lookups), one malformed (refused from its checksum),
    // and one request with credentials in both headers, whose kind cannot be told.
    const unknownKeys = [generateAccessKey(), generateAccessKey()];
    for (const key of unknownKeys) expect((await from('127.0.0.3', { 'x-access-key': key })).status).toBe(401);
    expect((await from('127.0.0.4', { 'x-access-key': 'cak_oops' })).status).toBe(401);
    expect(
      (await from('127.0.0.5', { 'x-access-key': member.key, authorization: `Bearer ${member.key}` })).status,
    ).toBe(401);
    // A blocked address: its third failure blocks it (limit 3), then even the admin's good key gets 429 twice.
    const attackerKeys = [generateAccessKey(), generateAccessKey(), generateAccessKey()];
    for (const key of attackerKeys) expect((await from('127.0.0.2', { 'x-access-key': key })).status).toBe(401);
    for (let i = 0; i < 2; i++) expect((await from('127.0.0.2', { 'x-access-key': admin.key })).status).toBe(429);
    // A person: sign-in (anonymous), then one request with the session token (a cache miss).
    const token = await login(app, member);
    expect((await app.gql(ME, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    // Reveals: a page with both users' keys (2), then one user's key read twice in one request (1: one view per user).
    const page = await app.gql('{ users { edges { node { accessKey } } } }', { key: admin.key });
    expect(page.body.data!.users.edges).toHaveLength(2);
    const twice = await app.gql('query ($id: ID!) { a: user(id: $id) { accessKey } b: user(id: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: member.id },
    });
    expect(twice.body.data!.a.accessKey).toBe(member.key);
    // One regeneration (last: its NOTIFY evicts the member's cached key).
    const regenerated = await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: member.id },
    });
    const newKey = regenerated.body.data!.regenerateAccessKey.accessKey as string;
    expect(newKey).toMatch(/^cak_/);

    const { text, samples } = await scrape(app);
    const delta = (series: string) => (samples.get(series) ?? 0) - (before.get(series) ?? 0);
    expect({
      keySuccess: delta('crm_access_authentications_total{kind="ACCESS_KEY",result="success"}'),
      sessionSuccess: delta('crm_access_authentications_total{kind="SESSION",result="success"}'),
      keyInvalid: delta('crm_access_authentications_total{kind="ACCESS_KEY",result="INVALID_CREDENTIALS"}'),
      keyMalformed: delta('crm_access_authentications_total{kind="ACCESS_KEY",result="MALFORMED_CREDENTIALS"}'),
      unknownMalformed: delta('crm_access_authentications_total{kind="UNKNOWN",result="MALFORMED_CREDENTIALS"}'),
      rateLimited: delta('crm_access_rate_limited_requests_total'),
      cacheHits: delta('crm_access_auth_cache_hits_total'),
      cacheMisses: delta('crm_access_auth_cache_misses_total'),
      reveals: delta('crm_access_key_reveals_total'),
      regenerations: delta('crm_access_key_regenerations_total'),
      queries: delta('crm_access_graphql_request_duration_seconds_count{operation="query",outcome="success"}'),
      mutations: delta('crm_access_graphql_request_duration_seconds_count{operation="mutation",outcome="success"}'),
      refused: delta('crm_access_graphql_request_duration_seconds_count{operation="none",outcome="client_error"}'),
    }).toEqual({
      keySuccess: 3 + 2 + 1, // the member's key 3 times; the admin's for the two reveals and the regeneration
      sessionSuccess: 1,
      keyInvalid: 2 + 3,
      keyMalformed: 1,
      unknownMalformed: 1,
      rateLimited: 2,
      cacheHits: 2 + 2 + 1, // the member's second and third use; the admin's three requests
      cacheMisses: 1 + 2 + 3 + 1, // the member's first use, five unknown keys, the session's first use
      reveals: 3,
      regenerations: 1,
      queries: 3 + 1 + 2,
      mutations: 2, // login and regenerateAccessKey
      refused: 4 + 3 + 2, // 401s and 429s never reach GraphQL
    });
    expect(samples.get('crm_access_notification_listener_connected')).toBe(1);
    expect(samples.get('crm_access_db_pool_connections')).toBeGreaterThan(0);
    expect(samples.has('crm_access_db_pool_idle_connections')).toBe(true);
    expect(samples.get('crm_access_db_pool_waiting_requests')).toBe(0);
    expect(samples.get('crm_access_auth_cache_entries')).toBeGreaterThan(0);
    // Nothing was shed, and each reason's series is there at 0 for an alert to find.
    expect(samples.get('crm_access_load_shed_requests_total{reason="event_loop_delay"}')).toBe(0);
    expect(samples.get('crm_access_load_shed_requests_total{reason="heap_used"}')).toBe(0);
    expect(samples.get('process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(samples.has('nodejs_eventloop_lag_seconds')).toBe(true);

    // No key, token, email or id appears anywhere in the exposition, labels and help texts included.
    const secrets = [admin.key, member.key, newKey, token, ...unknownKeys, ...attackerKeys, admin.email, member.email];
    const ids = [admin.id, member.id, admin.organizationId];
    for (const value of [...secrets, ...ids]) expect(text).not.toContain(value);
    expect(text).not.toMatch(/cak_|cas_|@example\.test|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-/);
  });

  it('counts a masked resolver failure as a server error of its operation type', async () => {
    const before = (await scrape(app)).samples;
    const user = await createUser(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET key_ciphertext = '\\xdeadbeef' WHERE user_id = $1`, [user.id]);
    const response = await app.gql('query ($id: ID!) { user(id: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(response.body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
    const { samples } = await scrape(app);
    const series = 'crm_access_graphql_request_duration_seconds_count{operation="query",outcome="server_error"}';
    expect((samples.get(series) ?? 0) - (before.get(series) ?? 0)).toBe(1);
  });

  it('are served on their own port only: the public port has no /metrics, the metrics port nothing else', async () => {
    const publicBase = app.url.replace(/\/graphql$/, '');
    expect((await fetch(`${publicBase}/metrics`)).status).toBe(404);
    const metricsBase = app.app.metricsUrl!.replace(/\/metrics$/, '');
    expect(new URL(metricsBase).port).not.toBe(new URL(publicBase).port);
    expect((await fetch(`${metricsBase}/graphql`)).status).toBe(404);
    expect((await fetch(`${metricsBase}/metrics`, { method: 'POST' })).status).toBe(404);
  });
});

// A scraper's or a load balancer's HEAD probe of /metrics (RFC 9110 9.3.2: HEAD is GET without the content) was
// the 404 "Not found: metrics are at GET /metrics", though the path exists.
it('HEAD /metrics answers as GET /metrics does, without a body', async () => {
  const app = await startTestApp({ env: { METRICS_PORT: '0' } });
  try {
    const get = await fetch(app.app.metricsUrl!);
    const head = await fetch(app.app.metricsUrl!, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe(get.headers.get('content-type'));
    expect(head.headers.get('cache-control')).toBe('no-store');
    expect(await head.text()).toBe('');
  } finally {
    await app.close();
  }
});

describe('without METRICS_PORT', () => {
  it('serves no metrics at all', async () => {
    const app = await startTestApp();
    try {
      expect(app.app.metricsUrl).toBeNull();
      expect((await fetch(app.url.replace(/\/graphql$/, '/metrics'))).status).toBe(404);
    } finally {
      await app.close();
    }
  });
});
