import { randomBytes } from 'node:crypto';

import { KEY_LOOKUP_MARK } from '../../src/access-keys/access-key.service';
import { generateAccessKey } from '../../src/access-keys/key-format';
import type { PauseHooks } from '../../src/authorization/authority';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { createTestDatabase, type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';
import { until } from '../helpers/until';

const LOGIN = 'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token } }';
const ME = '{ me { id } }';
const KEY_LOOKUP = KEY_LOOKUP_MARK;

let nextAddress = 10;
/** A client address of its own for each scenario (TRUST_PROXY=1 believes one X-Forwarded-For hop). */
function freshAddress(): string {
  return `203.0.113.${nextAddress++}`;
}

function signIn(app: TestApp, params: { address: string; email: string; password: string }): Promise<GraphQLResponse> {
  return app.gql(LOGIN, {
    variables: { email: params.email, password: params.password },
    headers: { 'x-forwarded-for': params.address },
  });
}

function withKey(app: TestApp, address: string, key: string): Promise<GraphQLResponse> {
  return app.gql(ME, { key, headers: { 'x-forwarded-for': address } });
}

/** Splits answers into failed sign-ins (or refused credentials) and 429s; anything else fails the test. */
function tally(responses: GraphQLResponse[]): { failed: number; limited: number } {
  let failed = 0;
  let limited = 0;
  for (const response of responses) {
    if (response.status === 429) {
      limited++;
      expect(response.body.errors![0].extensions!.code).toBe('RATE_LIMITED');
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    } else {
      expect(response.body.errors![0].extensions!.code).toBe('UNAUTHENTICATED');
      failed++;
    }
  }
  return { failed, limited };
}

const lookupsSince = (app: TestApp, before: number) =>
  app.queries.since(before).filter((sql) => sql.includes(KEY_LOOKUP)).length;

/**
 * Attempts are counted before they are verified: a client address gets at most AUTH_FAILURE_LIMIT expensive
 * checks (password verifications, lookups of unknown credentials) per window on one instance, however many
 * requests it sends at once; the rest answer 429 at once.
 */
/**
 * Jest's limit for a test that verifies up to 20 real scrypt hashes (N=2^17, about 128 MiB each): seconds on a quiet
 * machine, past the default 30 s on a loaded 2-core one. A bound against a hang, not a measure of speed.
 */
const SCRYPT_HEAVY_TIMEOUT_MS = 180_000;

describe('attempts are counted before they are verified', () => {
  describe('on one instance, with the limit at 20', () => {
    let app: TestApp;
    let admin: TestUser;
    beforeAll(async () => {
      // Per-address concurrency as high as the burst, so that the attempt reservations alone are what bound it.
      app = await startTestApp({
        env: { AUTH_FAILURE_LIMIT: '20', TRUST_PROXY: '1', PASSWORD_CHECKS_PER_CLIENT: '40' },
      });
      admin = await createOrganization(app, 'Attempts Org', TEST_PASSWORD);
    });
    afterAll(() => app.close());

    it('60 concurrent unknown keys from one address: at most 20 lookups, the rest 429', async () => {
      const address = freshAddress();
      const before = app.queries.count;
      const responses = await Promise.all(Array.from({ length: 60 }, () => withKey(app, address, generateAccessKey())));
      const lookups = lookupsSince(app, before);
      const { failed, limited } = tally(responses);
      expect(lookups).toBeLessThanOrEqual(20);
      expect(failed).toBe(lookups);
      expect(limited).toBe(60 - lookups);
      expect((await withKey(app, address, admin.key)).status).toBe(429);
    });

    it('a blocked address stays blocked with a valid session token, a valid key, and for sign-in', async () => {
      const address = freshAddress();
      const token = await login(app, admin);
      // Both credentials are in the instance's cache already: a blocked request must not reach it.
      expect(
        (await app.gql(ME, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': freshAddress() } }))
          .status,
      ).toBe(200);
      expect((await withKey(app, freshAddress(), admin.key)).status).toBe(200);
      for (let i = 0; i < 20; i++) expect((await withKey(app, address, generateAccessKey())).status).toBe(401);
      const asSession = await app.gql(ME, {
        headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': address },
      });
      expect(asSession.status).toBe(429);
      expect((await withKey(app, address, admin.key)).status).toBe(429);
      const signedIn = await signIn(app, { address, email: admin.email, password: TEST_PASSWORD });
      expect(signedIn.status).toBe(429);
      expect(signedIn.body.errors![0].extensions!.code).toBe('RATE_LIMITED');
      // Elsewhere the same session works.
      expect(
        (await app.gql(ME, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': freshAddress() } }))
          .status,
      ).toBe(200);
    });
  });

  describe('on one instance, with the limit at 3', () => {
    let app: TestApp;
    let admin: TestUser;
    beforeAll(async () => {
      app = await startTestApp({
        env: { AUTH_FAILURE_LIMIT: '3', TRUST_PROXY: '1', PASSWORD_CHECKS_PER_CLIENT: '40' },
      });
      admin = await createOrganization(app, 'Small Limit Org', TEST_PASSWORD);
    });
    afterAll(() => app.close());

    it('a successful sign-in gives its attempt back: 5 right passwords in a row all sign in', async () => {
      const address = freshAddress();
      for (let i = 0; i < 5; i++) {
        const response = await signIn(app, { address, email: admin.email, password: TEST_PASSWORD });
        expect(response.body.data?.login.token).toMatch(/^cas_/);
      }
    });

    it("changePassword's current-password check is counted before it runs too", async () => {
      const person = await createUser(app, admin, { password: TEST_PASSWORD });
      const token = await login(app, person);
      const address = freshAddress();
      const before = app.services.passwords.verifications;
      const responses = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          app.gql(
            'mutation ($c: String!) { changePassword(currentPassword: $c, newPassword: "a brand new password") }',
            {
              variables: { c: `not the password ${i}` },
              headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': address },
            },
          ),
        ),
      );
      const verified = app.services.passwords.verifications - before;
      expect(verified).toBeLessThanOrEqual(3);
      const codes = responses.map((r) => r.body.errors![0].extensions!.code);
      expect(codes.filter((code) => code === 'BAD_USER_INPUT')).toHaveLength(verified);
      expect(responses.filter((r) => r.status === 429)).toHaveLength(8 - verified);
    });
  });

  describe.each([
    {
      bound: 'as high as the burst (40), so that the attempt reservations alone bound it',
      env: { PASSWORD_CHECKS_PER_CLIENT: '40' },
      thenBlocked: true,
    },
    // The default bound refuses most of the burst before it counts as an attempt: the address is not blocked after.
    { bound: 'at its default', env: {}, thenBlocked: false },
  ])('with the limit at 20 and the bound on sign-ins under way per address $bound', ({ env, thenBlocked }) => {
    let app: TestApp;
    let admin: TestUser;
    beforeAll(async () => {
      app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '20', TRUST_PROXY: '1', ...env } });
      admin = await createOrganization(app, 'Sign-in Burst Org', TEST_PASSWORD);
    });
    afterAll(() => app.close());

    it(
      `40 concurrent wrong sign-ins from one address: at most 20 passwords verified, the rest 429${thenBlocked ? '; then blocked for the right password too' : ''}`,
      async () => {
        const address = freshAddress();
        const before = app.services.passwords.verifications;
        const responses = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            signIn(app, { address, email: admin.email, password: `wrong guess number ${i}` }),
          ),
        );
        const verified = app.services.passwords.verifications - before;
        const { failed, limited } = tally(responses);
        expect(verified).toBeLessThanOrEqual(20);
        expect(failed).toBe(verified);
        expect(limited).toBe(40 - verified);
        if (thenBlocked)
          expect((await signIn(app, { address, email: admin.email, password: TEST_PASSWORD })).status).toBe(429);
      },
      SCRYPT_HEAVY_TIMEOUT_MS,
    );
  });

  describe('bounds on password hashing', () => {
    let app: TestApp;
    let admin: TestUser;
    const hooks: PauseHooks = {};
    const held: Array<{ client: string; release: () => void }> = [];
    beforeAll(async () => {
      app = await startTestApp({
        hooks,
        env: {
          TRUST_PROXY: '1',
          PASSWORD_HASH_CONCURRENCY: '1',
          PASSWORD_HASH_QUEUE: '2',
          PASSWORD_CHECKS_PER_CLIENT: '2',
        },
      });
      admin = await createOrganization(app, 'Hashing Bound Org', TEST_PASSWORD);
    });
    beforeEach(() => {
      // Every verification holds its places until the test lets it go.
      hooks.duringPasswordCheck = (client) => new Promise<void>((release) => held.push({ client, release }));
    });
    afterEach(() => {
      delete hooks.duringPasswordCheck;
      for (const { release } of held.splice(0)) release();
    });
    afterAll(() => app.close());

    const releaseAll = () => {
      for (const { release } of held.splice(0)) release();
    };

    it('one address gets at most its share of sign-ins under way: beyond it 429 at once, not counted, others unaffected', async () => {
      const crowded = freshAddress();
      const elsewhere = freshAddress();
      const first = signIn(app, { address: crowded, email: admin.email, password: TEST_PASSWORD });
      await until(() => held.length === 1);
      const second = signIn(app, { address: crowded, email: admin.email, password: TEST_PASSWORD });
      await until(() => app.services.passwords.queued === 1);
      const third = await signIn(app, { address: crowded, email: admin.email, password: TEST_PASSWORD });
      expect(third.status).toBe(429);
      expect(third.headers.get('retry-after')).toBe('1');
      expect(third.body.errors![0].extensions!.code).toBe('RATE_LIMITED');
      // Another address still gets a place in the queue and signs in.
      const other = signIn(app, { address: elsewhere, email: admin.email, password: TEST_PASSWORD });
      await until(() => app.services.passwords.queued === 2);
      hooks.duringPasswordCheck = async () => undefined;
      releaseAll();
      for (const response of await Promise.all([first, second, other]))
        expect(response.body.data!.login.token).toMatch(/^cas_/);
      // The refused one was not a failed attempt.
      expect(app.services.rateLimiter.retryAfterSeconds(crowded)).toBe(0);
    });

    it('when every place is taken, sign-in answers 503 SERVICE_UNAVAILABLE with Retry-After', async () => {
      const running = signIn(app, { address: freshAddress(), email: admin.email, password: TEST_PASSWORD });
      await until(() => held.length === 1);
      const waiting = [
        signIn(app, { address: freshAddress(), email: admin.email, password: TEST_PASSWORD }),
        signIn(app, { address: freshAddress(), email: admin.email, password: TEST_PASSWORD }),
      ];
      await until(() => app.services.passwords.queued === 2);
      const refused = await signIn(app, { address: freshAddress(), email: admin.email, password: TEST_PASSWORD });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body.errors![0].extensions!.code).toBe('SERVICE_UNAVAILABLE');
      hooks.duringPasswordCheck = async () => undefined;
      releaseAll();
      for (const response of await Promise.all([running, ...waiting]))
        expect(response.body.data!.login.token).toMatch(/^cas_/);
    });
  });

  describe('two instances on one database', () => {
    const LIMIT = 20;
    let database: { url: string; drop(): Promise<void> };
    let a: TestApp;
    let b: TestApp;
    beforeAll(async () => {
      database = await createTestDatabase();
      const secret = randomBytes(32);
      const env = { AUTH_FAILURE_LIMIT: String(LIMIT), TRUST_PROXY: '1', PASSWORD_CHECKS_PER_CLIENT: '100' };
      a = await startTestApp({ env, database: { url: database.url, secret } });
      b = await startTestApp({ env, database: { url: database.url, secret } });
      await createOrganization(a, 'Two Instances Org', TEST_PASSWORD);
    });
    afterAll(async () => {
      await a.close();
      await b.close();
      await database.drop();
    });

    it('60 unknown keys to each at once from one address: at most 2 x 20 lookups in all (README: N x limit)', async () => {
      const address = freshAddress();
      const [beforeA, beforeB] = [a.queries.count, b.queries.count];
      const responses = await Promise.all(
        Array.from({ length: 120 }, (_, i) => withKey(i % 2 ? b : a, address, generateAccessKey())),
      );
      const lookups = lookupsSince(a, beforeA) + lookupsSince(b, beforeB);
      const { failed, limited } = tally(responses);
      expect(lookupsSince(a, beforeA)).toBeLessThanOrEqual(LIMIT);
      expect(lookupsSince(b, beforeB)).toBeLessThanOrEqual(LIMIT);
      expect(failed).toBe(lookups);
      expect(limited).toBe(120 - lookups);
    });

    it('failures one instance already wrote count on the other: what the table counted is not allowed again', async () => {
      const address = freshAddress();
      for (let i = 0; i < 15; i++) expect((await withKey(a, address, generateAccessKey())).status).toBe(401);
      await a.services.rateLimiter.flush();
      // B has counted nothing itself; its first failure writes and learns the shared count (16 of 20).
      expect((await withKey(b, address, generateAccessKey())).status).toBe(401);
      await b.services.rateLimiter.flush();
      const before = b.queries.count;
      const responses = await Promise.all(Array.from({ length: 20 }, () => withKey(b, address, generateAccessKey())));
      expect(lookupsSince(b, before)).toBeLessThanOrEqual(LIMIT - 16);
      expect(tally(responses).limited).toBeGreaterThanOrEqual(20 - (LIMIT - 16));
    });
  });
});
