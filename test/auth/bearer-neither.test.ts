import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * README's sign-in example: a failed `login` leaves TOKEN=null, which the next request sends as `Bearer null`. That
 * was refused as "The access key is malformed ... (it starts with cak_ ...)", though a Bearer value may be a
 * session token as well: the answer now names both, and says that a failed sign-in gives no token.
 */
describe('a Bearer value that is neither an access key nor a session token', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  const NEITHER =
    'The Bearer credential is neither an access key (cak_…) nor a session token (cas_…): send one of them, ' +
    'whole (42 characters). A failed sign-in gives no token.';

  it.each(['null', 'undefined', 'eyJhbGciOiJIUzI1NiJ9.e30.x', `xas_${'a'.repeat(38)}`])(
    'Bearer %s: 401 MALFORMED_CREDENTIALS naming both, no error line',
    async (value) => {
      const before = app.logs.length;
      const response = await app.gql('{ me { id } }', { headers: { authorization: `Bearer ${value}` } });
      expect(response.status).toBe(401);
      expect(response.body).toEqual({
        errors: [{ message: NEITHER, extensions: { code: 'UNAUTHENTICATED', reason: 'MALFORMED_CREDENTIALS' } }],
      });
      expect(app.logs.slice(before).filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
    },
  );

  it('a malformed value of either shape keeps its own message, and a whole key or token still works', async () => {
    const key = await app.gql('{ me { id } }', { headers: { authorization: `Bearer ${admin.key.slice(0, -1)}` } });
    expect(key.body.errors![0].message).toMatch(/^The access key is malformed/);
    const token = await app.gql('{ me { id } }', { headers: { authorization: `Bearer cas_${'a'.repeat(38)}` } });
    expect(token.body.errors![0].message).toMatch(/^The session token is malformed/);
    const works = await app.gql('{ me { id } }', { headers: { authorization: `Bearer ${admin.key}` } });
    expect(works.body.data!.me.id).toBe(admin.id);
  });
});
