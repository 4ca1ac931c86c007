import fc from 'fast-check';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Generated and mutated documents, variables and bodies, and requests of every shape (operation names and
 * types, several operations per document, extensions, GET and POST): never a 5xx, never a crash, and never an
 * error-level log line, since client input that could write one could fill the error log.
 */
const SEEDS = [
  '{ me { id email role organization { id name } } }',
  'query ($id: ID!) { user(id: $id) { id email accessKey accessKeyInfo { hint createdAt } } }',
  'query ($f: UsersFilter, $n: Int, $a: String) { users(filter: $f, first: $n, after: $a) { totalCount edges { cursor node { id name accessKey } } pageInfo { hasNextPage endCursor } } }',
  'query ($n: Int, $a: String) { auditEvents(first: $n, after: $a, filter: { action: ACCESS_KEY_VIEWED }) { edges { node { id action actor { id } target { email } } } } }',
  'mutation ($input: CreateUserInput!) { createUser(input: $input) { id accessKey } }',
  'mutation ($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id name email } }',
  'mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { role } }',
  'mutation ($id: ID!, $g: Int) { regenerateAccessKey(userId: $id, gracePeriodSeconds: $g) { accessKey previousKeyExpiresAt } }',
  'mutation ($id: ID!) { deactivateUser(id: $id) { isActive } reactivateUser(id: $id) { isActive } }',
  'mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { token } }',
  'query { ...F } fragment F on Query { me { ... on User { id } } }',
  '{ __schema { queryType { name } } __type(name: "User") { fields { name } } }',
];

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.string({ maxLength: 12, unit: 'binary' }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.constantFrom(
      '{',
      '}',
      '(',
      ')',
      '$',
      '@skip',
      '...',
      '"',
      '\\',
      ':',
      '!',
      '[',
      ']',
      '#',
      '\u0000',
      '__typename',
    ),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('repeat' as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 40 }),
    times: fc.integer({ min: 2, max: 30 }),
  }),
);

type Mutation =
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'repeat'; at: number; length: number; times: number };

function mutate(document: string, mutations: Mutation[]): string {
  let text = document;
  for (const m of mutations) {
    const at = text.length ? m.at % text.length : 0;
    if (m.kind === 'delete') text = text.slice(0, at) + text.slice(at + m.length);
    else if (m.kind === 'insert') text = text.slice(0, at) + m.text + text.slice(at);
    else if (m.kind === 'truncate') text = text.slice(0, at);
    else text = text.slice(0, at) + text.slice(at, at + m.length).repeat(m.times) + text.slice(at + m.length);
  }
  return text;
}

const jsonValue = fc.oneof(
  { maxDepth: 3 },
  fc.string({ maxLength: 60 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    'ADMIN',
    'MEMBER',
    'OWNER',
    '',
    'x'.repeat(300),
    '00000000-0000-4000-8000-000000000000',
    '%',
    '\u0000',
  ),
  fc.constantFrom(2 ** 31, -1, 501, 1e308, Number.MAX_SAFE_INTEGER),
);

describe('fuzz: no input makes the service answer 5xx or fall over', () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { AUTH_FAILURE_LIMIT: '1000000', LOG_LEVEL: 'info' } });
    admin = await createOrganization(app, 'Fuzzed Org');
    member = await createUser(app, admin, { role: Role.MEMBER });
  });
  afterAll(() => app.close());

  /** No request of a test may have written an error-level line. */
  let logsChecked = 0;
  afterEach(() => {
    const errors = app.logs.slice(logsChecked).filter((line) => JSON.parse(line).level >= 50);
    logsChecked = app.logs.length;
    expect(errors.map((line) => line.slice(0, 500))).toEqual([]);
  });

  async function post(body: string, headers: Record<string, string>) {
    const response = await fetch(app.url, { method: 'POST', headers, body });
    const text = await response.text();
    return { status: response.status, text };
  }

  function check(result: { status: number; text: string }) {
    if (result.status >= 500) throw new Error(`5xx: ${result.status} ${result.text.slice(0, 500)}`);
    expect(() => JSON.parse(result.text)).not.toThrow();
    expect(result.text).not.toMatch(/\bat [\w.<>]+ \(|node_modules|"INTERNAL_SERVER_ERROR"/);
  }

  it('holds for 2,000 mutated documents with generated variables and credentials', async () => {
    const variables = fc.dictionary(
      fc.constantFrom('id', 'n', 'a', 'f', 'g', 'e', 'p', 'role', 'input', 'x'),
      jsonValue,
      { maxKeys: 5 },
    );
    const credential = fc.constantFrom<Record<string, string>>(
      {},
      { 'x-access-key': 'ADMIN' },
      { 'x-access-key': 'MEMBER' },
      { 'x-access-key': 'cak_broken' },
      { authorization: 'Bearer cas_nope' },
      { authorization: 'Basic Zm9vOmJhcg==' },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...SEEDS),
        fc.array(mutation, { maxLength: 4 }),
        variables,
        credential,
        async (seed, mutations, vars, headers) => {
          const keyed = { ...headers };
          if (keyed['x-access-key'] === 'ADMIN') keyed['x-access-key'] = admin.key;
          if (keyed['x-access-key'] === 'MEMBER') keyed['x-access-key'] = member.key;
          if (vars.id === undefined) vars.id = member.id;
          const query = mutate(seed, mutations);
          check(
            await post(JSON.stringify({ query, variables: vars }), { 'content-type': 'application/json', ...keyed }),
          );
        },
      ),
      { numRuns: 2000 },
    );
  }, 300_000);

  it('holds for 400 requests of generated shapes: operation names and types, operations per document, extensions, GET and POST', async () => {
    const operation = fc.record({
      type: fc.constantFrom('query', 'mutation', 'subscription', ''),
      name: fc.option(fc.constantFrom('A', 'B', 'Op', 'me'), { nil: undefined }),
      body: fc.constantFrom(
        '{ __typename }',
        '{ me { id } }',
        '{ logout }',
        '{ users(first: 2) { totalCount } }',
        '{ nope }',
        '{ me { id } ...F }',
      ),
    });
    const document = fc
      .array(operation, { maxLength: 4 })
      .map((operations) =>
        operations
          .map(({ type, name, body }) => (type || name ? `${type || 'query'} ${name ?? ''} ${body}` : body))
          .join('\n'),
      );
    const anyJson = fc.jsonValue({ maxDepth: 2 });
    const persistedQuery = fc.oneof(
      fc.record(
        {
          version: fc.oneof(fc.constant(1), fc.constant(2), fc.integer(), fc.string({ maxLength: 3 })),
          sha256Hash: fc.oneof(fc.string({ maxLength: 70 }), fc.stringMatching(/^[0-9a-f]{64}$/), fc.integer()),
        },
        { requiredKeys: [] },
      ),
      anyJson,
    );
    const extensions = fc.oneof(
      fc.record({ persistedQuery }, { requiredKeys: [] }),
      fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 3 }),
      anyJson,
    );
    const operationName = fc.oneof(
      fc.constantFrom('A', 'B', 'Op', 'X', '', 'me'),
      fc.string({ maxLength: 10 }),
      fc.integer(),
      fc.constant(null),
      fc.object({ maxDepth: 1 }),
    );
    const request = fc.record(
      {
        query: fc.oneof(document, anyJson),
        operationName,
        variables: fc.oneof(fc.dictionary(fc.constantFrom('n', 'id', 'x'), anyJson, { maxKeys: 2 }), anyJson),
        extensions,
      },
      { requiredKeys: [] },
    );
    const who = fc.constantFrom<'none' | 'admin' | 'member'>('none', 'admin', 'member');
    await fc.assert(
      fc.asyncProperty(request, who, fc.boolean(), async (body, caller, overGet) => {
        const headers: Record<string, string> =
          caller === 'none' ? {} : { 'x-access-key': caller === 'admin' ? admin.key : member.key };
        if (!overGet) {
          check(await post(JSON.stringify(body), { 'content-type': 'application/json', ...headers }));
          return;
        }
        const search = new URLSearchParams();
        for (const [name, value] of Object.entries(body)) {
          search.set(name, typeof value === 'string' ? value : JSON.stringify(value));
        }
        const response = await fetch(`${app.url}?${search}`, {
          headers: { 'apollo-require-preflight': 'true', ...headers },
        });
        check({ status: response.status, text: await response.text() });
      }),
      { numRuns: 400 },
    );
  }, 120_000);

  it('holds for 300 arbitrary bodies and content types', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        fc.constantFrom(
          'application/json',
          'application/graphql-response+json',
          'text/plain',
          'application/x-www-form-urlencoded',
          'multipart/form-data',
        ),
        async (body, type) => check(await post(body, { 'content-type': type, 'x-access-key': member.key })),
      ),
      { numRuns: 300 },
    );
    expect((await fetch(app.url.replace(/\/graphql$/, '/healthz'))).status).toBe(200);
  }, 120_000);
});
