import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { withDatabase } from './helpers/database-url';
import { startTestApp, type TestApp, type TestAppOptions } from './helpers/test-app';
import { until } from './helpers/until';

describe('health and readiness', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  const base = () => app.url.replace(/\/graphql$/, '');

  it('/healthz and /readyz answer 200 on a migrated database', async () => {
    expect((await fetch(`${base()}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base()}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  /** Runs `work` against an app on a new database that no migration has touched yet; drops it afterwards. */
  async function withUnmigratedApp(
    options: Pick<TestAppOptions, 'env' | 'captureLogs'>,
    work: (unmigrated: TestApp) => Promise<void>,
  ): Promise<void> {
    const name = `crm_access_unmigrated_${randomBytes(4).toString('hex')}`;
    const admin = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const unmigrated = await startTestApp({
      ...options,
      database: { url: withDatabase(process.env.CRM_TEST_SERVER_URL!, name), secret: randomBytes(32) },
    });
    try {
      await work(unmigrated);
    } finally {
      await unmigrated.close();
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
    }
  }

  it('/readyz answers 503 while migrations are pending', () =>
    withUnmigratedApp({}, async (unmigrated) => {
      const ready = await fetch(unmigrated.url.replace(/\/graphql$/, '/readyz'));
      expect(ready.status).toBe(503);
      // As /graphql's 503 while pending: a probe or a load balancer is told when to ask again.
      expect(ready.headers.get('retry-after')).toBe('1');
      expect(await ready.json()).toEqual({ status: 'unavailable', reason: 'database migrations are pending' });
    }));

  it('an instance started before `npm run migrate` says once that its listener waits for the migrations, and serves once the database is migrated', () =>
    withUnmigratedApp({ env: { LOG_LEVEL: 'info' }, captureLogs: true }, async (unmigrated) => {
      const listenerWarnings = () =>
        unmigrated.logs.filter((line) => line.includes('the notification listener waits for the migrations')).length;
      // The listener's reload of the rate limits fails until the tables exist: one info line for the whole wait
      // (the start's own warning already says migrations are pending), not "lost the notification connection"
      // with a stack trace (it lost nothing).
      await until(() => listenerWarnings() > 0);
      await unmigrated.dataSource.runMigrations({ transaction: 'each' });
      await until(() => unmigrated.services.notifications.isListening);
      expect(listenerWarnings()).toBe(1);
      expect(unmigrated.logs.filter((line) => line.includes('lost the notification connection'))).toEqual([]);
      expect(unmigrated.logs.filter((line) => line.includes('"stack"'))).toEqual([]);
      expect((await fetch(unmigrated.url.replace(/\/graphql$/, '/readyz'))).status).toBe(200);
      expect((await unmigrated.gql('{ __typename }')).body).toEqual({ data: { __typename: 'Query' } });
    }));

  it('answers malformed JSON with a JSON 400 and no stack trace or path', async () => {
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": ',
    });
    expect(response.status).toBe(400);
    const text = await response.text();
    expect(JSON.parse(text).errors[0].extensions.code).toBe('BAD_REQUEST');
    expect(text).not.toMatch(/\bat \w|node_modules|\/src\//);
    expect(response.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});
