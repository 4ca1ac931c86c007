import { randomBytes } from 'node:crypto';

import { KEY_LOOKUP_MARK } from '../../src/access-keys/access-key.service';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTcpProxy, type TcpProxy, throughProxy } from '../helpers/tcp-proxy';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

/** The property: refused on the other instance by then, measured from before the regeneration was sent. */
const DEADLINE_MS = 2000;
const ME = '{ me { id role } }';
const KEY_LOOKUP = KEY_LOOKUP_MARK;

async function until(condition: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Instance A's LISTEN connection goes through a TCP proxy the test can pause: its PostgreSQL backend then
 * seems to hang, the connection stays open, and no notification arrives. A must still refuse a key
 * regenerated through instance B within 2 s, because its cache answers only while the listener's
 * heartbeat proves that every change committed before it was heard.
 */
describe('revocation freshness when the listener hangs', () => {
  let database: { url: string; drop(): Promise<void> };
  let proxy: TcpProxy;
  let a: TestApp;
  let b: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    database = await createTestDatabase();
    const server = new URL(process.env.CRM_TEST_SERVER_URL!);
    proxy = await startTcpProxy({ host: server.hostname, port: Number(server.port || 5432) });
    const secret = randomBytes(32);
    const env = { AUTH_FAILURE_LIMIT: '100000' };
    a = await startTestApp({
      env,
      database: { url: database.url, secret },
      listenerDatabaseUrl: (url) => throughProxy(proxy, url),
    });
    b = await startTestApp({ env, database: { url: database.url, secret } });
    admin = await createOrganization(b, 'Hung Listener Org');
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await proxy?.close();
    await database?.drop();
  });

  /** Uses the key on A until A answers it from its cache (no lookup). */
  async function cachedOnA(key: string): Promise<void> {
    await until(async () => {
      const before = a.queries.count;
      const response = await a.gql(ME, { key });
      expect(response.status).toBe(200);
      return a.queries.since(before).every((sql) => !sql.includes(KEY_LOOKUP));
    });
  }

  /** Regenerates the user's key through instance B, with no grace period. */
  async function regenerateOnB(userId: string): Promise<void> {
    const regenerated = await b.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: userId },
    });
    expect(regenerated.body.errors).toBeUndefined();
  }

  it('a key regenerated on B is refused on A within 2 s while A listener hangs, 10 of 10 trials', async () => {
    const elapsed: number[] = [];
    for (let trial = 0; trial < 10; trial++) {
      const user = await createUser(b, admin);
      await cachedOnA(user.key);
      proxy.pause();
      try {
        const sentAt = performance.now();
        await regenerateOnB(user.id);
        let refusedAfter = Infinity;
        while (performance.now() - sentAt <= DEADLINE_MS) {
          if ((await a.gql(ME, { key: user.key })).status === 401) {
            refusedAfter = performance.now() - sentAt;
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        elapsed.push(refusedAfter);
        // The hung connection was not dropped: a slow answer is not a lost connection.
        expect(a.services.notifications.isListening).toBe(true);
      } finally {
        proxy.resume();
      }
    }
    for (const ms of elapsed) expect(ms).toBeLessThanOrEqual(DEADLINE_MS);
  }, 120_000);

  it('a step back of the wall clock while the listener hangs does not keep a regenerated key cached', async () => {
    const user = await createUser(b, admin);
    await cachedOnA(user.key);
    const wallClock = Date.now;
    proxy.pause();
    // An NTP correction or `date -s` moves the wall clock an hour back; intervals must not move with it.
    Date.now = () => wallClock() - 3_600_000;
    try {
      const sentAt = performance.now();
      await regenerateOnB(user.id);
      let status = 200;
      while (status !== 401 && performance.now() - sentAt <= DEADLINE_MS) {
        status = (await a.gql(ME, { key: user.key })).status;
        if (status !== 401) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(status).toBe(401);
    } finally {
      Date.now = wallClock;
      proxy.resume();
    }
  });

  it('the instance that makes a change evicts its own cache at once, without waiting for the notification', async () => {
    const cache = a.services.authCache;
    const apply = cache.applyNotification.bind(cache);
    // Notifications still arrive (the heartbeat keeps the cache fresh) but evict nothing.
    cache.applyNotification = () => undefined;
    try {
      const regenerated = await createUser(a, admin);
      const deactivated = await createUser(a, admin);
      const promoted = await createUser(a, admin, { role: Role.MEMBER });
      for (const user of [regenerated, deactivated, promoted]) await cachedOnA(user.key);

      await a.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
        key: admin.key,
        variables: { id: regenerated.id },
      });
      expect((await a.gql(ME, { key: regenerated.key })).status).toBe(401);

      await a.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', {
        key: admin.key,
        variables: { id: deactivated.id },
      });
      expect((await a.gql(ME, { key: deactivated.key })).status).toBe(401);

      await a.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MANAGER) { id } }', {
        key: admin.key,
        variables: { id: promoted.id },
      });
      expect((await a.gql(ME, { key: promoted.key })).body.data!.me.role).toBe('MANAGER');
    } finally {
      cache.applyNotification = apply;
    }
  });

  it('a password change and a sign-out end sessions on the instance that made them at once, without waiting for the notification', async () => {
    const person = await createUser(a, admin, { password: TEST_PASSWORD });
    const [changer, other] = [await login(a, person), await login(a, person)];
    const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    /** Uses the token on A until A answers it from its cache (no session lookup). */
    const cachedSessionOnA = (token: string) =>
      until(async () => {
        const before = a.queries.count;
        expect((await a.gql(ME, bearer(token))).status).toBe(200);
        return a.queries.since(before).every((sql) => !sql.includes('FROM sessions s'));
      });
    for (const token of [changer, other]) await cachedSessionOnA(token);
    const cache = a.services.authCache;
    const apply = cache.applyNotification.bind(cache);
    // Notifications still arrive (the heartbeat keeps the cache fresh) but evict nothing.
    cache.applyNotification = () => undefined;
    try {
      const changed = await a.gql(
        'mutation ($current: String!, $next: String!) { changePassword(currentPassword: $current, newPassword: $next) }',
        {
          ...bearer(changer),
          variables: { current: TEST_PASSWORD, next: 'a brand new passphrase' },
        },
      );
      expect(changed.body).toEqual({ data: { changePassword: true } });
      expect((await a.gql(ME, bearer(other))).status).toBe(401);
      expect((await a.gql(ME, bearer(changer))).status).toBe(200);

      await cachedSessionOnA(changer);
      expect((await a.gql('mutation { logout }', bearer(changer))).body).toEqual({ data: { logout: true } });
      expect((await a.gql(ME, bearer(changer))).status).toBe(401);
    } finally {
      cache.applyNotification = apply;
    }
  });

  it('a leak report and a key policy applied to existing keys evict on the instance that made them at once', async () => {
    const policyAdmin = await createOrganization(a, 'Local Eviction Org');
    const leaked = await createUser(a, policyAdmin);
    const aged = await createUser(a, policyAdmin);
    // Older than the policy's one day: applying the policy to existing keys expires it at once.
    await a.dataSource.query(`UPDATE access_keys SET created_at = now() - interval '2 days' WHERE user_id = $1`, [
      aged.id,
    ]);
    for (const user of [leaked, aged]) await cachedOnA(user.key);
    const cache = a.services.authCache;
    const apply = cache.applyNotification.bind(cache);
    // Notifications still arrive (the heartbeat keeps the cache fresh) but evict nothing.
    cache.applyNotification = () => undefined;
    try {
      const reported = await a.gql(
        'mutation ($key: String!) { reportLeakedAccessKey(key: $key, location: "a ticket") { revoked } }',
        {
          key: policyAdmin.key,
          variables: { key: leaked.key },
        },
      );
      expect(reported.body).toEqual({ data: { reportLeakedAccessKey: { revoked: true } } });
      expect((await a.gql(ME, { key: leaked.key })).status).toBe(401);

      const policy = await a.gql(
        'mutation { setAccessKeyPolicy(maxKeyAgeDays: 1, applyToExistingKeys: true) { existingKeysUpdated } }',
        {
          key: policyAdmin.key,
        },
      );
      expect(policy.body.errors).toBeUndefined();
      expect((await a.gql(ME, { key: aged.key })).status).toBe(401);
      expect((await a.gql(ME, { key: policyAdmin.key })).status).toBe(200);
    } finally {
      cache.applyNotification = apply;
    }
  });

  it('while the notification connection is down nothing is cached', async () => {
    const user = await createUser(b, admin);
    await cachedOnA(user.key);
    proxy.disconnect();
    try {
      await until(() => !a.services.notifications.isListening);
      expect(a.services.authCache.size).toBe(0);
      const before = a.queries.count;
      for (let i = 0; i < 3; i++) expect((await a.gql(ME, { key: user.key })).status).toBe(200);
      expect(a.queries.since(before).filter((sql) => sql.includes(KEY_LOOKUP))).toHaveLength(3);
      expect(a.services.authCache.size).toBe(0);
    } finally {
      proxy.reconnect();
    }
    await until(() => a.services.notifications.isListening);
    await cachedOnA(user.key);
  });
});
