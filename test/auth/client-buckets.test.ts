import { generateAccessKey } from '../../src/access-keys/key-format';
import type { PauseHooks } from '../../src/authorization/authority';
import { createOrganization, TEST_PASSWORD, type TestUser, uniqueEmail } from '../factories/organizations';
import { type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';
import { until } from '../helpers/until';

const LOGIN = 'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token } }';
const CREATE =
  'mutation ($email: String!, $password: String) { createUser(input: { email: $email, name: "Hashed", password: $password }) { id } }';

function from(address: string): Record<string, string> {
  return { 'x-forwarded-for': address };
}

/**
 * Every count and bound kept per client address is kept per bucket: an IPv4 address (an IPv4-mapped IPv6 one
 * included) is its own, an IPv6 address counts as its /64, which one subscriber can rotate through at will.
 */
describe('client buckets', () => {
  describe('failed attempts, with the limit at 5', () => {
    let app: TestApp;
    let admin: TestUser;
    beforeAll(async () => {
      app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '5', TRUST_PROXY: '1' } });
      admin = await createOrganization(app, 'Buckets Org', TEST_PASSWORD);
    });
    afterAll(() => app.close());

    const wrongSignIn = (address: string, i: number) =>
      app.gql(LOGIN, { variables: { email: admin.email, password: `wrong guess ${i}` }, headers: from(address) });

    it('wrong sign-ins from 5 addresses of one IPv6 /64 block the whole /64, not its neighbour', async () => {
      for (let i = 1; i <= 5; i++) expect((await wrongSignIn(`2001:db8:aa:1::${i.toString(16)}`, i)).status).toBe(200);
      const rotated = await app.gql(LOGIN, {
        variables: { email: admin.email, password: TEST_PASSWORD },
        headers: from('2001:db8:aa:1:ffff:1234:5678:9abc'),
      });
      expect(rotated.status).toBe(429);
      expect(rotated.body.errors![0].extensions!.code).toBe('RATE_LIMITED');
      const neighbour = await app.gql(LOGIN, {
        variables: { email: admin.email, password: TEST_PASSWORD },
        headers: from('2001:db8:aa:2::1'),
      });
      expect(neighbour.body.data!.login.token).toMatch(/^cas_/);
    });

    it('unknown keys from rotating addresses of one /64 are counted together too', async () => {
      for (let i = 1; i <= 5; i++) {
        const response = await app.gql('{ me { id } }', {
          key: generateAccessKey(),
          headers: from(`2001:db8:bb:1:${i}::${i}`),
        });
        expect(response.status).toBe(401);
      }
      const rotated = await app.gql('{ me { id } }', { key: admin.key, headers: from('2001:db8:bb:1:99::99') });
      expect(rotated.status).toBe(429);
      expect((await app.gql('{ me { id } }', { key: admin.key, headers: from('2001:db8:bb:2::1') })).status).toBe(200);
    });

    it('an IPv4-mapped IPv6 address is its IPv4 address', async () => {
      for (let i = 1; i <= 5; i++)
        expect((await wrongSignIn(i % 2 ? '198.51.100.7' : '::ffff:198.51.100.7', i)).status).toBe(200);
      expect((await wrongSignIn('::ffff:198.51.100.7', 6)).status).toBe(429);
      expect((await wrongSignIn('198.51.100.7', 7)).status).toBe(429);
      expect((await wrongSignIn('198.51.100.8', 8)).status).toBe(200);
    });
  });

  describe('hashing new passwords, with 2 places per address', () => {
    let app: TestApp;
    let admin: TestUser;
    const hooks: PauseHooks = {};
    const held: Array<() => void> = [];
    beforeAll(async () => {
      app = await startTestApp({
        hooks,
        env: {
          TRUST_PROXY: '1',
          PASSWORD_CHECKS_PER_CLIENT: '2',
          PASSWORD_HASH_CONCURRENCY: '1',
          PASSWORD_HASH_QUEUE: '8',
        },
      });
      admin = await createOrganization(app, 'Hash Bound Org', TEST_PASSWORD);
    });
    afterAll(() => app.close());

    it('createUser and changePassword from an address holding its places answer RATE_LIMITED at once; other addresses queue', async () => {
      hooks.duringPasswordCheck = () => new Promise<void>((release) => held.push(release));
      const create = (address: string, email: string) =>
        app.gql(CREATE, { key: admin.key, variables: { email, password: TEST_PASSWORD }, headers: from(address) });
      const busy = '2001:db8:cc:1::1';
      const emails = [uniqueEmail('h0'), uniqueEmail('h1'), uniqueEmail('h2'), uniqueEmail('h3')];
      const first = create(busy, emails[0]);
      await until(() => held.length === 1);
      // Another address of the same /64: the same bucket.
      const second = create('2001:db8:cc:1::2', emails[1]);
      await until(() => app.services.passwords.queued === 1);
      const third: GraphQLResponse = await create('2001:db8:cc:1::3', emails[2]);
      expect(third.body.errors![0].extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 1 });
      const change: GraphQLResponse = await app.gql(
        'mutation { changePassword(currentPassword: "wrong current one", newPassword: "a brand new password") }',
        {
          key: admin.key,
          headers: from(busy),
        },
      );
      expect(change.body.errors![0].extensions!.code).toBe('RATE_LIMITED');
      const elsewhere = create('2001:db8:cc:2::1', emails[3]);
      await until(() => app.services.passwords.queued === 2);
      hooks.duringPasswordCheck = async () => undefined;
      for (const release of held.splice(0)) release();
      for (const response of await Promise.all([first, second, elsewhere]))
        expect(response.body.errors).toBeUndefined();
      const rows: Array<{ email: string }> = await app.dataSource.query(
        `SELECT email FROM users WHERE email = ANY($1) ORDER BY email`,
        [emails],
      );
      expect(rows.map((row) => row.email)).toEqual([emails[0], emails[1], emails[3]].sort());
    });
  });
});
