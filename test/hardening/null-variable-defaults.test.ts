import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A variable of a nullable type with a default may stand where a value is required (graphql-js validation allows
 * it, as the spec does); a client that then sends it as an explicit null has made a mistake, which graphql-js
 * only finds while executing, as an error without a code. It must be a clear 400 BAD_USER_INPUT, not a masked
 * INTERNAL_SERVER_ERROR with an error-level log line that anyone could fill the log with.
 */
describe('an explicit null for a variable whose default stands where a value is required', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info' } });
    admin = await createOrganization(app, 'Null Defaults Org');
  });
  afterAll(() => app.close());

  async function views(): Promise<number> {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED'`,
    );
    return n;
  }

  const cases: Array<[string, string, Record<string, unknown>]> = [
    [
      '@include on a field of a users page (read by the page to choose its columns)',
      'query ($v: Boolean = true) { users { edges { node { id name @include(if: $v) } } } }',
      { v: null },
    ],
    [
      '@include on accessKey in a users page',
      'query ($v: Boolean = true) { users { edges { node { id accessKey @include(if: $v) } } } }',
      { v: null },
    ],
    [
      '@skip on a root field',
      'query ($v: Boolean = false) { me { id } users @skip(if: $v) { totalCount } }',
      { v: null },
    ],
    [
      'a required field argument',
      'query ($id: ID = "00000000-0000-0000-0000-000000000000") { user(id: $id) { id } }',
      { id: null },
    ],
    [
      'inside a fragment',
      'query ($v: Boolean = true) { users { ...F } } fragment F on UserConnection { pageInfo { hasNextPage @include(if: $v) } }',
      { v: null },
    ],
  ];

  it.each(cases)(
    '%s: 400 BAD_USER_INPUT naming the variable, nothing runs, no error-level log line',
    async (_label, query, variables) => {
      const logsBefore = app.logs.length;
      const viewsBefore = await views();
      const response = await app.gql(query, { key: admin.key, variables });
      const errorLines = app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50);
      expect(errorLines).toEqual([]);
      expect(response.status).toBe(400);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(response.headers.get('x-request-id')).toBeTruthy();
      expect(response.body.data).toBeUndefined();
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(/^Variable "\$\w+" is null where a value is required/),
          extensions: expect.objectContaining({ code: 'BAD_USER_INPUT' }),
        }),
      ]);
      expect(await views()).toBe(viewsBefore);
    },
  );

  it('still answers the same variables given a value, or left out (the default applies)', async () => {
    const given = await app.gql('query ($v: Boolean = true) { me { id name @include(if: $v) } }', {
      key: admin.key,
      variables: { v: false },
    });
    expect(given.body).toEqual({ data: { me: { id: admin.id } } });
    const defaulted = await app.gql('query ($v: Boolean = true) { me { id name @include(if: $v) } }', {
      key: admin.key,
    });
    expect(defaulted.body).toEqual({ data: { me: { id: admin.id, name: admin.name } } });
    // Null where null is allowed stays a plain null.
    const nullable = await app.gql('query ($s: String = "x") { users(filter: { search: $s }) { totalCount } }', {
      key: admin.key,
      variables: { s: null },
    });
    expect(nullable.body.errors).toBeUndefined();
  });
});
