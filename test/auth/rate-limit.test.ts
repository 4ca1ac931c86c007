import { randomBytes } from 'node:crypto';

import { generateAccessKey } from '../../src/access-keys/key-format';
import { createOrganization, type TestUser } from '../factories/organizations';
import { postFrom } from '../helpers/http';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

const LIMIT = 5;
const ENV = { AUTH_FAILURE_LIMIT: String(LIMIT), AUTH_FAILURE_WINDOW_SECONDS: '300' };
const ME = '{ me { id } }';

async function eventually<T>(probe: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (accept(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('rate limiting of failed authentication per client address', () => {
  let database: { url: string; drop(): Promise<void> };
  const secret = randomBytes(32);
  let a: TestApp;
  let b: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    database = await createTestDatabase();
    a = await startTestApp({ env: ENV, database: { url: database.url, secret } });
    b = await startTestApp({ env: ENV, database: { url: database.url, secret } });
    admin = await createOrganization(a);
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await database.drop();
  });

  const from = (app: TestApp, localAddress: string, key: string, query = ME) =>
    postFrom({ url: app.url, localAddress, query, headers: { 'x-access-key': key } });

  it('turns repeated bad credentials into 429 with Retry-After, without looking the credential up, on every instance', async () => {
    const attacker = '127.0.0.2';
    const wrongKeys = [generateAccessKey(), 'cak_tooshort', generateAccessKey(), 'garbage', generateAccessKey()];
    for (const key of wrongKeys) expect((await from(a, attacker, key)).status).toBe(401);

    // The block applies once the counted failures are written (a moment later), to anything from that address.
    const blocked = await eventually(
      () => from(a, attacker, admin.key),
      (r) => r.status === 429,
    );
    expect(blocked.status).toBe(429);
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(200);
    expect(retryAfter).toBeLessThanOrEqual(300);
    expect(blocked.body.errors[0].extensions).toMatchObject({ code: 'RATE_LIMITED' });

    // A blocked request runs no SQL at all: the presented credential is never looked up.
    await a.services.rateLimiter.flush();
    const before = a.queries.count;
    expect((await from(a, attacker, generateAccessKey())).status).toBe(429);
    await a.services.rateLimiter.flush();
    expect(a.queries.count).toBe(before);

    // The other instance learned of the block through PostgreSQL.
    const onB = await eventually(
      () => from(b, attacker, admin.key),
      (r) => r.status === 429,
    );
    expect(onB.status).toBe(429);

    // A good client elsewhere is not slowed or refused.
    const good = await from(a, '127.0.0.3', admin.key);
    expect(good.status).toBe(200);
    expect(good.body.data.me.id).toBe(admin.id);
    expect((await from(b, '127.0.0.3', admin.key)).status).toBe(200);
  });

  it('blocks at the limit at once on the instance that counted it, without waiting for the database', async () => {
    const attacker = '127.0.0.6';
    const guess = (i: number) =>
      `mutation { login(email: "${admin.email}", password: "guess number ${i}!") { token } }`;
    for (let i = 0; i < LIMIT; i++) {
      const response = await postFrom({ url: a.url, localAddress: attacker, query: guess(i) });
      expect(response.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    }
    // No waiting: the very next attempt is refused, although the failures have not been written yet.
    const next = await postFrom({ url: a.url, localAddress: attacker, query: guess(LIMIT) });
    expect(next.status).toBe(429);
    expect((await from(a, '127.0.0.7', admin.key)).status).toBe(200);
    // The database still gets every failure, for the other instances.
    await a.services.rateLimiter.flush();
    expect(await a.dataSource.query('SELECT failures FROM auth_failures WHERE client = $1', [attacker])).toEqual([
      { failures: LIMIT },
    ]);
  });

  it('a step of the wall clock neither lifts a block nor ends a window early, on the instance that counted it or the other', async () => {
    const attacker = '127.0.0.9';
    for (let i = 0; i < LIMIT - 1; i++) expect((await from(a, attacker, generateAccessKey())).status).toBe(401);
    const wallClock = Date.now;
    try {
      // An hour forward (an NTP step): the window still holds its LIMIT - 1 failures, so one more blocks.
      Date.now = () => wallClock() + 3_600_000;
      expect((await from(a, attacker, generateAccessKey())).status).toBe(401);
      expect((await from(a, attacker, admin.key)).status).toBe(429);
      // B learns the block through PostgreSQL, as what is left of it by the database's clock.
      const onB = await eventually(
        () => from(b, attacker, admin.key),
        (r) => r.status === 429,
      );
      expect(onB.status).toBe(429);
      // Another hour forward: still blocked on both, for what is left of the window.
      Date.now = () => wallClock() + 7_200_000;
      for (const app of [a, b]) {
        const blocked = await from(app, attacker, admin.key);
        expect(blocked.status).toBe(429);
        expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(200);
      }
    } finally {
      Date.now = wallClock;
    }
  });

  it('counts failed sign-ins too, and the block survives a restart of the instance', async () => {
    const attacker = '127.0.0.4';
    for (let i = 0; i < LIMIT; i++) {
      const response = await postFrom({
        url: a.url,
        localAddress: attacker,
        query: `mutation { login(email: "${admin.email}", password: "guess number ${i}!") { token } }`,
      });
      expect(response.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    }
    expect(
      (
        await eventually(
          () => from(a, attacker, admin.key),
          (r) => r.status === 429,
        )
      ).status,
    ).toBe(429);

    // A window that ended long ago counts for nothing, and its row goes when an instance starts.
    await a.dataSource.query(
      `INSERT INTO auth_failures (client, window_started_at, failures) VALUES ('192.0.2.1', now() - interval '1 day', 3)`,
    );
    await a.close();
    a = await startTestApp({ env: ENV, database: { url: database.url, secret } });
    const ended = await eventually(
      () => a.dataSource.query(`SELECT client FROM auth_failures WHERE client = '192.0.2.1'`),
      (rows) => rows.length === 0,
    );
    expect(ended).toEqual([]);
    expect((await from(a, attacker, admin.key)).status).toBe(429);
    expect((await from(a, '127.0.0.5', admin.key)).status).toBe(200);
  });

  describe('when blocked addresses never come back', () => {
    /** Announces, as another instance would, a block of `remainingMs` for each of `clients`, in one statement. */
    const announce = (clients: string[], remainingMs: number) =>
      a.dataSource.query(
        `SELECT pg_notify('crm_access_auth_blocks', json_build_object('client', c, 'remainingMs', $2::float8)::text)
           FROM unnest($1::text[]) AS c`,
        [clients, remainingMs],
      );
    const learned = (client: string) =>
      eventually(
        async () => a.services.rateLimiter.retryAfterSeconds(client),
        (seconds) => seconds > 0,
      );
    const addresses = (second: number, count: number) =>
      Array.from({ length: count }, (_, i) => `10.${second}.${i >> 8}.${i & 255}`);

    it('forgets their ended blocks: what it holds stays bounded by the blocks still running', async () => {
      const rateLimiter = a.services.rateLimiter;
      const before = rateLimiter.blockedClients;
      // 3,000 blocks of 1 ms, then a marker that is long: once the marker is learned, so are they (one channel).
      await announce(addresses(1, 3000), 1);
      await announce(['192.0.2.10'], 600_000);
      expect(await learned('192.0.2.10')).toBeGreaterThan(0);
      // Every one of the 3,000 has ended after this (the blocks are on the monotonic clock).
      await new Promise((resolve) => setTimeout(resolve, 5));

      // As many running blocks again, and one: more than the sweep waits for, so ended blocks are swept meanwhile.
      await announce(addresses(2, 3500), 600_000);
      await announce(['192.0.2.11'], 600_000);
      expect(await learned('192.0.2.11')).toBeGreaterThan(0);

      // The 3,502 running blocks (and whatever earlier tests left), none of the 3,000 ended ones.
      expect(rateLimiter.blockedClients).toBeLessThanOrEqual(before + 3502);
      expect(rateLimiter.blockedClients).toBeGreaterThanOrEqual(3502);
      expect(rateLimiter.retryAfterSeconds('10.2.0.1')).toBeGreaterThan(0);
      expect(rateLimiter.retryAfterSeconds('10.1.0.1')).toBe(0);
    });
  });
});
