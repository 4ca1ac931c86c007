import { Client } from 'pg';
import pino from 'pino';

import { AUTH_CHANGES_CHANNEL, AuthCache } from '../../src/authentication/auth-cache';
import type { Principal } from '../../src/authentication/principal';
import { Notifications } from '../../src/db/notifications';
import { createOrganization, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}

describe('the notification listener and the auth cache it guards', () => {
  const url = process.env.CRM_TEST_SERVER_URL!;
  const principal = {
    kind: 'ACCESS_KEY',
    userId: 'u1',
    organizationId: 'o1',
    role: 'ADMIN',
    user: {},
  } as unknown as Principal;
  let admin: Client;
  beforeAll(async () => {
    admin = new Client({ connectionString: url });
    await admin.connect();
  });
  afterAll(() => admin.end());

  it('a connection lost while a connect handler waits does not turn the cache on unheard, and a revocation sent then is not missed', async () => {
    const notifications = new Notifications({ url, logger: pino({ level: 'silent' }), connectTimeoutMs: 2000 });
    const cache = new AuthCache({ maxEntries: 100, ttlSeconds: 60 });
    notifications.on(AUTH_CHANGES_CHANNEL, (payload) => cache.applyNotification(payload));
    let connects = 0;
    let enabledWhileDeaf = false;
    // Stands in for a handler with a database round trip (the rate limiter's reload): the listener dies during it.
    notifications.onConnect(async () => {
      if (connects++ > 0) return;
      // This instance's own listener (other suites run theirs at the same time).
      const listener = (notifications as unknown as { client: { processID: number } }).client;
      await admin.query('SELECT pg_terminate_backend($1)', [listener.processID]);
      await until(() => !notifications.isListening);
    });
    notifications.onConnect(() => {
      if (!notifications.isListening) enabledWhileDeaf = true;
      cache.enable();
    });
    notifications.onDisconnect(() => cache.disable());
    try {
      await notifications.start();
      // While nobody listens, what is looked up must not be cached, so a revocation missed now cannot be served later.
      cache.set('digest-u1', principal, { epoch: cache.epoch });
      await admin.query(`SELECT pg_notify($1, $2)`, [AUTH_CHANGES_CHANNEL, JSON.stringify({ userId: 'u1' })]);
      await until(() => notifications.isListening && connects >= 2);
      await sleep(50);
      expect(enabledWhileDeaf).toBe(false);
      expect(cache.get('digest-u1')).toBeUndefined();
      // Listening again: the cache works, and revocations reach it.
      cache.set('digest-u1', principal, { epoch: cache.epoch });
      expect(cache.get('digest-u1')).toBe(principal);
      await admin.query(`SELECT pg_notify($1, $2)`, [AUTH_CHANGES_CHANNEL, JSON.stringify({ userId: 'u1' })]);
      await until(() => cache.get('digest-u1') === undefined);
    } finally {
      await notifications.stop();
    }
  });

  it('a connect handler that keeps failing (a database whose migrations are pending) is one outage: one warning, and the retries back off', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const notifications = new Notifications({ url, logger, connectTimeoutMs: 2000 });
    notifications.on(AUTH_CHANGES_CHANNEL, () => undefined);
    const retryDelaysMs: number[] = [];
    // Stands in for the rate limiter's reload before `npm run migrate`: the table it reads does not exist yet.
    notifications.onConnect(async () => {
      retryDelaysMs.push((notifications as unknown as { retryMs: number }).retryMs);
      if (retryDelaysMs.length <= 4) await admin.query('SELECT 1 FROM crm_access_no_such_table');
    });
    try {
      await notifications.start();
      await until(() => notifications.isListening && retryDelaysMs.length === 5, 15_000);
      // The delay the listener will wait after each failed try: doubling from 100 ms, never reset by a handler that failed.
      expect(retryDelaysMs).toEqual([100, 200, 400, 800, 1600]);
      const warnings = lines.map(
        (line) => JSON.parse(line) as { level: number; msg: string; reason?: string; err?: unknown },
      );
      expect(warnings).toHaveLength(1);
      // It says what it waits for, naming the table, at info and without a stack: nothing was lost.
      expect(warnings[0].level).toBe(30);
      expect(warnings[0].msg).toBe(
        'the notification listener waits for the migrations (a table it reads is missing); retrying',
      );
      expect(warnings[0].reason).toMatch(/crm_access_no_such_table/);
      expect(warnings[0].err).toBeUndefined();
    } finally {
      await notifications.stop();
    }
  });

  it('stopping while the connection is still being opened lets start() finish, and leaves no connection', async () => {
    for (let i = 0; i < 40; i++) {
      const notifications = new Notifications({ url, logger: pino({ level: 'silent' }), connectTimeoutMs: 2000 });
      notifications.on(AUTH_CHANGES_CHANNEL, () => undefined);
      const started = notifications.start();
      await sleep(i % 5);
      await notifications.stop();
      await started;
      expect(notifications.isListening).toBe(false);
    }
    // Connections that were still opening are closed as soon as they are up (only this test listens on this database).
    const listeners = async () =>
      (
        await admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'crm-access-listener' AND datname = current_database()`,
        )
      ).rows[0].n as number;
    let open = await listeners();
    for (const deadline = Date.now() + 5000; open > 0 && Date.now() < deadline; open = await listeners())
      await sleep(50);
    expect(open).toBe(0);
  });

  it("PostgreSQL delivers a notification committed before a query was sent ahead of that query's answer (what the heartbeat relies on)", async () => {
    const listener = new Client({ connectionString: url });
    await listener.connect();
    const heard = new Set<string>();
    listener.on('notification', (message) => heard.add(message.payload ?? ''));
    try {
      await listener.query('LISTEN heartbeat_ordering_probe');
      for (let i = 0; i < 200; i++) {
        // Committed (autocommit) before the listener's query is sent; the listener is idle or busy, by turns.
        await admin.query(`SELECT pg_notify('heartbeat_ordering_probe', $1)`, [String(i)]);
        const answered = listener.query(i % 2 ? 'SELECT 1' : 'SELECT pg_sleep(0.001)').then(() => heard.has(String(i)));
        expect(await answered).toBe(true);
      }
    } finally {
      await listener.end();
    }
  });

  it('the cache answers only while the listener has recently proven it heard everything', () => {
    const cache = new AuthCache({ maxEntries: 100, ttlSeconds: 60 });
    cache.enable();
    cache.set('digest-u1', principal, { epoch: cache.epoch });
    expect(cache.get('digest-u1')).toBe(principal);
    // The last answered heartbeat was sent long ago: a miss (the caller asks the database), the entry kept.
    (cache as unknown as { freshUntilMs: number }).freshUntilMs = performance.now() - 1;
    expect(cache.get('digest-u1')).toBeUndefined();
    expect(cache.size).toBe(1);
    cache.confirmFresh(performance.now());
    expect(cache.get('digest-u1')).toBe(principal);
  });

  it('turning the cache on starts it empty', () => {
    const cache = new AuthCache({ maxEntries: 100, ttlSeconds: 60 });
    cache.enable();
    cache.set('digest-u1', principal, { epoch: cache.epoch });
    cache.enable();
    expect(cache.get('digest-u1')).toBeUndefined();
  });
});

describe('emptying a credential table', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Truncated Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  it('TRUNCATE sessions ends sessions the cache knew (row triggers do not fire on TRUNCATE)', async () => {
    const token = await login(app, admin);
    const me = () => app.gql('{ me { id } }', { headers: { authorization: `Bearer ${token}` } });
    expect((await me()).status).toBe(200);
    expect((await me()).status).toBe(200);
    await app.dataSource.query('TRUNCATE sessions');
    const deadline = Date.now() + 2000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await sleep(20);
      status = (await me()).status;
    }
    expect(status).toBe(401);
  });
});
