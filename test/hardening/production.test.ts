import { randomBytes } from 'node:crypto';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const PRODUCTION = {
  NODE_ENV: 'production',
  ACCESS_KEY_SECRET: randomBytes(32).toString('base64'),
  CORS_ORIGINS: 'https://crm.example, https://admin.crm.example',
};

describe.each([
  ['development', {}],
  ['production', PRODUCTION],
] as const)('unexpected errors are masked (%s)', (_mode, env) => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ env });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('a resolver that fails inside answers INTERNAL_SERVER_ERROR with a generic message and the request id', async () => {
    const user = await createUser(app, admin);
    // A ciphertext that cannot be opened makes the accessKey resolver throw a crypto error.
    await app.dataSource.query(`UPDATE access_keys SET key_ciphertext = '\\xdeadbeef' WHERE user_id = $1`, [user.id]);
    const response = await app.gql('query ($id: ID!) { user(id: $id) { id accessKey } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(response.status).toBe(200);
    expect(response.body.data!.user).toEqual({ id: user.id, accessKey: null });
    const [error] = response.body.errors!;
    expect(error.extensions).toEqual({
      code: 'INTERNAL_SERVER_ERROR',
      requestId: response.headers.get('x-request-id'),
    });
    expect(error.message).toBe('Internal server error. Quote the request id when reporting it.');
    expect(JSON.stringify(response.body)).not.toMatch(/stack|node_modules|\/src\/|SELECT|crypto|auth tag|decipher/i);
  });
});

describe('production mode', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ env: PRODUCTION });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('refuses introspection', async () => {
    const response = await app.gql('{ __schema { types { name } } }', { key: admin.key });
    expect(response.status).toBe(400);
    expect(response.body.errors![0].message).toMatch(/introspection/i);
    expect(response.body.data).toBeUndefined();
  });

  it.each<[string]>([['{ __schema { types { name } } }'], ['{ __type(name: "User") { fields { name } } }']])(
    'refuses introspection without naming the framework or how to configure it: %s, without credentials',
    async (query) => {
      const response = await app.gql(query);
      expect(response.status).toBe(400);
      const [error] = response.body.errors!;
      expect(error.message).toMatch(/introspection .* is turned off/i);
      expect(error.message).not.toMatch(/Apollo|ApolloServer|introspection: true|pass/);
      expect(error.extensions!.code).toBe('GRAPHQL_VALIDATION_FAILED');
    },
  );

  it('gives no "Did you mean" suggestions', async () => {
    const response = await app.gql('{ mee { id } user(id: "x") { emal } }', { key: admin.key });
    expect(response.status).toBe(400);
    expect(JSON.stringify(response.body)).not.toMatch(/Did you mean/i);
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['an input field', 'query ($f: UsersFilter) { users(filter: $f) { totalCount } }', { f: { serch: 'x' } }],
    ['an enum value', 'query ($r: Role) { users(filter: { role: $r }) { totalCount } }', { r: 'ADMN' }],
    [
      'an audit action',
      'query ($a: AuditAction) { auditEvents(filter: { action: $a }) { edges { cursor } } }',
      { a: 'LOGIN_FAIL' },
    ],
    [
      'an enum value in a list of inputs',
      'mutation ($i: CreateUserInput!) { createUser(input: $i) { id } }',
      { i: { email: 'a@b.example', name: 'A', role: 'MEMBR' } },
    ],
  ])('gives no "Did you mean" for a mistyped variable: %s, without credentials', async (_label, query, variables) => {
    const response = await app.gql(query, { variables });
    expect(response.status).toBe(400);
    expect(response.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(response.body)).not.toMatch(/Did you mean|search|ADMIN|LOGIN_FAILED|MEMBER/);
  });

  it('serves no explorer page', async () => {
    const response = await fetch(app.url, { headers: { accept: 'text/html' } });
    expect(response.headers.get('content-type') ?? '').not.toMatch(/html/);
    expect(await response.text()).not.toMatch(/<html|graphiql|sandbox/i);
  });

  it('answers CORS only for the configured origins', async () => {
    const preflight = (origin: string) =>
      fetch(app.url, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type,x-access-key',
        },
      });
    const allowed = await preflight('https://crm.example');
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://crm.example');
    expect(allowed.headers.get('access-control-allow-headers')).toMatch(/x-access-key/);
    const other = await preflight('https://evil.example');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();

    const simple = await app.gql('{ me { id } }', { key: admin.key, headers: { origin: 'https://evil.example' } });
    expect(simple.headers.get('access-control-allow-origin')).toBeNull();

    // OPTIONS that is no preflight (no Origin, or no method asked) asks what /graphql allows, with origins
    // configured as without: it was @fastify/cors's plain-text 400 "Invalid Preflight Request".
    const notPreflights: Array<Record<string, string>> = [
      {},
      { origin: 'https://crm.example' },
      { 'access-control-request-method': 'POST' },
    ];
    for (const headers of notPreflights) {
      const options = await fetch(app.url, { method: 'OPTIONS', headers });
      expect([options.status, options.headers.get('allow'), await options.text()]).toEqual([
        204,
        'GET, HEAD, POST, OPTIONS',
        '',
      ]);
      expect(options.headers.get('cache-control')).toBe('no-store');
    }
  });
});
