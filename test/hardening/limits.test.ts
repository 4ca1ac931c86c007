import { getIntrospectionQuery } from 'graphql';

import { MAX_INTROSPECTION_DEPTH } from '../../src/graphql/query-limits';
import { createOrganization, type TestUser } from '../factories/organizations';
import { executionSpy } from '../helpers/execution-spy';
import { startTestApp, type TestApp } from '../helpers/test-app';

describe('query limits: refused with 400 before any resolver runs', () => {
  let app: TestApp;
  let admin: TestUser;
  const spy = executionSpy();

  beforeAll(async () => {
    app = await startTestApp({ env: { MAX_QUERY_DEPTH: '4' }, plugins: [spy.plugin] });
    admin = await createOrganization(app);
    // The key is looked up once here, so the counts below see only what the refused operations cause.
    await app.gql('{ __typename }', { key: admin.key });
  });
  afterAll(() => app.close());

  const usersPage = '{ edges { node { id email name role organization { id name } } } }';
  const cases: Array<[string, string, string]> = [
    ['too deep', `{ users ${usersPage} }`, 'QUERY_TOO_DEEP'],
    [
      'too many aliases',
      `{ ${Array.from({ length: 31 }, (_, i) => `a${i}: __typename`).join(' ')} }`,
      'TOO_MANY_ALIASES',
    ],
    [
      'too many directives',
      `{ ${Array.from({ length: 21 }, (_, i) => `d${i}: __typename @include(if: true)`).join(' ')} }`,
      'TOO_MANY_DIRECTIVES',
    ],
    [
      'too costly: ten pages of 500',
      `{ ${Array.from({ length: 10 }, (_, i) => `p${i}: users(first: 500) { edges { node { id email } } }`).join(' ')} }`,
      'QUERY_TOO_COMPLEX',
    ],
    ['too many tokens', `{ ${'__typename '.repeat(6000)} }`, 'QUERY_TOO_LARGE'],
  ];

  it.each(cases)('%s', async (_label, query, code) => {
    const [executionsBefore, statementsBefore] = [spy.executions, app.queries.count];
    const response = await app.gql(query, { key: admin.key });
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code }) })]);
    expect(response.body.errors![0].message).not.toMatch(/\bat \w+ \(|node_modules/);
    expect(spy.executions).toBe(executionsBefore);
    expect(app.queries.since(statementsBefore).filter((sql) => !/last_used_at|auth_failures/.test(sql))).toEqual([]);
  });

  describe('a page larger than its list allows is BAD_USER_INPUT naming the maximum, before the cost', () => {
    it.each<[string, string, Record<string, unknown> | undefined, number]>([
      ['users, literal', '{ users(first: 100000) { totalCount } }', undefined, 500],
      ['users, variable', 'query ($n: Int) { users(first: $n) { totalCount } }', { n: 100000 }, 500],
      ['users, variable default', 'query ($n: Int = 501) { users(first: $n) { totalCount } }', undefined, 500],
      ['users, negative', '{ users(first: -1) { totalCount } }', undefined, 500],
      [
        'users, in a fragment',
        '{ ...F } fragment F on Query { users(first: 2000) { edges { cursor } } }',
        undefined,
        500,
      ],
      ['auditEvents, literal', '{ auditEvents(first: 100000) { edges { cursor } } }', undefined, 500],
      ['auditEvents, variable', 'query ($n: Int) { auditEvents(first: $n) { edges { cursor } } }', { n: 501 }, 500],
    ])('%s', async (_label, query, variables, max) => {
      const [executionsBefore, statementsBefore] = [spy.executions, app.queries.count];
      const response = await app.gql(query, { key: admin.key, variables });
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          message: expect.stringContaining(`from 0 to ${max}`),
          extensions: { code: 'BAD_USER_INPUT', field: 'first' },
        }),
      ]);
      expect(spy.executions).toBe(executionsBefore);
      expect(app.queries.since(statementsBefore).filter((sql) => !/last_used_at|auth_failures/.test(sql))).toEqual([]);
    });

    it('the same without credentials', async () => {
      const response = await app.gql('{ users(first: 100000) { totalCount } }');
      expect(response.status).toBe(400);
      expect(response.body.errors![0].extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'first' });
    });
  });

  it('costs totalCount and pageInfo once per list, not once per item: only edges are multiplied by first', async () => {
    const page = 'users(first: 500) { totalCount pageInfo { hasNextPage endCursor } edges { cursor } }';
    const tenPages = `{ ${Array.from({ length: 10 }, (_, i) => `p${i}: ${page}`).join(' ')} }`;
    const response = await app.gql(tenPages, { key: admin.key });
    expect(response.status).toBe(200);
    expect(response.body.data!.p0.totalCount).toBeGreaterThan(0);
    const fragment = `{ ${Array.from({ length: 10 }, (_, i) => `p${i}: users(first: 500) { ...Page }`).join(' ')} } fragment Page on UserConnection { totalCount pageInfo { hasNextPage } edges { cursor } }`;
    expect((await app.gql(fragment, { key: admin.key })).status).toBe(200);
    // Per-item fields still count per item: twenty pages of 500 edges with a node each are too costly.
    const nodes = `{ ${Array.from({ length: 20 }, (_, i) => `p${i}: users(first: 500) { totalCount edges { node { id } } }`).join(' ')} }`;
    const tooCostly = await app.gql(nodes, { key: admin.key });
    expect(tooCostly.status).toBe(400);
    expect(tooCostly.body.errors![0].extensions!.code).toBe('QUERY_TOO_COMPLEX');
  });

  it('counts `first` from variables, and lets an ordinary page through', async () => {
    const query = `query ($n: Int) { a: users(first: $n) { edges { node { id } } } b: users(first: $n) { edges { node { id } } } }`;
    const big = await app.gql(query, { key: admin.key, variables: { n: 500 } });
    expect(big.status).toBe(200);
    const many = `query ($n: Int) { ${Array.from({ length: 12 }, (_, i) => `p${i}: users(first: $n) { edges { node { id email } } }`).join(' ')} }`;
    const tooMany = await app.gql(many, { key: admin.key, variables: { n: 500 } });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.errors![0].extensions!.code).toBe('QUERY_TOO_COMPLEX');
  });

  it('measures each fragment once: spreads nested two at a time are refused at once, even without credentials', async () => {
    // Expanded, this is 2^40 fields; walking the expansion would hold the event loop for days. Its 41 fragments
    // all merge into one place, past MAX_QUERY_FRAGMENT_SPREADS (20), so it is refused before validation.
    const levels = 40;
    const fragments = Array.from({ length: levels }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`);
    const query = `query { ...F0 } ${fragments.join(' ')} fragment F${levels} on Query { __typename }`;
    const response = await app.gql(query);
    expect(response.status).toBe(400);
    expect(response.body.errors![0].extensions!.code).toBe('TOO_MANY_FRAGMENT_SPREADS');
    // It costs what it would written out: 2^14 fields is within the default limit of 20,000, 2^15 is not.
    const unrolled = (n: number) =>
      `query { ...F0 } ${fragments.slice(0, n).join(' ')} fragment F${n} on Query { __typename }`;
    const allowed = await app.gql(unrolled(14));
    expect(allowed.status).toBe(200);
    expect(allowed.body.data).toEqual({ __typename: 'Query' });
    const over = await app.gql(unrolled(15));
    expect(over.status).toBe(400);
    expect(over.body.errors![0].message).toMatch(/would cost 32768\b/);
    // 20 fragments, the most one place takes: 2^19 fields written out, measured once per fragment.
    const most = await app.gql(unrolled(19));
    expect(most.status).toBe(400);
    expect(most.body.errors![0].message).toMatch(/would cost 524288\b/);
  });

  // GraphiQL's introspection query with every option on, with and without `oneOf` (graphql-js 16.9+): it passes
  // the depth limit (4 here) and the repeated-selection limits that run before validation.
  it.each([false, true])('the introspection query GraphiQL sends runs (oneOf: %s)', async (oneOf) => {
    const standard = getIntrospectionQuery({
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
      oneOf,
    });
    const introspection = await app.gql(standard);
    expect(introspection.status).toBe(200);
    expect(introspection.body.data).toHaveProperty('__schema.queryType.name', 'Query');
  });

  it('limits introspection depth apart: a chain deeper than the introspection query is refused', async () => {
    const chain = `{ __type(name: "User") { fields { type { ${'ofType { '.repeat(MAX_INTROSPECTION_DEPTH)}name${' }'.repeat(MAX_INTROSPECTION_DEPTH)} } } } }`;
    const deep = await app.gql(chain);
    expect(deep.status).toBe(400);
    expect(deep.body.errors![0].extensions!.code).toBe('QUERY_TOO_DEEP');
  });

  it('measures a document with variables (or their defaults) on every request, and one without every time it is sent', async () => {
    const many = `query ($n: Int) { ${Array.from({ length: 12 }, (_, i) => `p${i}: users(first: $n) { edges { node { id email } } }`).join(' ')} }`;
    const statuses = [];
    for (const n of [1, 500, 1, 500]) statuses.push((await app.gql(many, { key: admin.key, variables: { n } })).status);
    expect(statuses).toEqual([200, 400, 200, 400]);
    const defaulted = many.replace('$n: Int', '$n: Int = 500');
    expect((await app.gql(defaulted, { key: admin.key })).status).toBe(400);
    expect((await app.gql(defaulted, { key: admin.key, variables: { n: 1 } })).status).toBe(200);
    const fixed = `{ ${Array.from({ length: 12 }, (_, i) => `p${i}: users(first: 500) { edges { node { id email } } }`).join(' ')} }`;
    for (let i = 0; i < 2; i++) expect((await app.gql(fixed, { key: admin.key })).status).toBe(400);
  });
});

/**
 * The token limit does not bound a document's length: one string or comment token may be most of a 1 MiB body.
 * graphql-js works out each error's line and column by scanning the text up to it, so 100 validation errors at the
 * end of 900 KB cost ~200 ms of CPU per request, without credentials. A document longer than 20 characters per
 * allowed token is refused before it is parsed.
 */
describe('query length: refused before parsing', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({
      env: { NODE_ENV: 'production', ACCESS_KEY_SECRET: Buffer.alloc(32, 3).toString('base64') },
    });
  });
  afterAll(() => app.close());

  it('30 leaves with 30 KB arguments each (900 KB, 100 conflicts): QUERY_TOO_LARGE naming the length, nothing else', async () => {
    const leaves = Array.from({ length: 30 }, (_, i) => `__typename(a: "${String(i).padEnd(30_000, 'x')}")`);
    const response = await app.gql(`{ ${leaves.join(' ')} }`);
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([
      {
        message: 'The operation is too large: more than 100000 characters (20 for each of the 5000 tokens allowed).',
        extensions: { code: 'QUERY_TOO_LARGE' },
      },
    ]);
  });

  it('a long comment counts too; a document within the length runs', async () => {
    const padded = (length: number) => `# ${'x'.repeat(length)}\n{ __typename }`;
    expect((await app.gql(padded(100_000))).body.errors![0].extensions!.code).toBe('QUERY_TOO_LARGE');
    expect((await app.gql(padded(99_000))).body).toEqual({ data: { __typename: 'Query' } });
  });
});

describe('GraphQL over HTTP', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  async function send(
    init: RequestInit & { path?: string },
  ): Promise<{ status: number; text: string; type: string | null }> {
    const response = await fetch(`${app.url}${init.path ?? ''}`, init);
    return { status: response.status, text: await response.text(), type: response.headers.get('content-type') };
  }

  function expectCleanJson(result: { text: string; type: string | null }): any {
    expect(result.type).toMatch(/json/);
    expect(result.text).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\/src\/|<html/i);
    return JSON.parse(result.text);
  }

  it('malformed JSON: 400 with a JSON error, no stack trace, path or HTML', async () => {
    const result = await send({
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": "{ me { id } ',
    });
    expect(result.status).toBe(400);
    expect(expectCleanJson(result).errors[0].extensions.code).toBe('BAD_REQUEST');
  });

  it('a JSON array (batch) is refused with 400', async () => {
    const result = await send({
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-access-key': admin.key },
      body: JSON.stringify([{ query: '{ __typename }' }, { query: '{ __typename }' }]),
    });
    expect(result.status).toBe(400);
    expectCleanJson(result);
  });

  it('a mutation over GET is refused with 405', async () => {
    const query = encodeURIComponent(`mutation { regenerateAccessKey(userId: "${admin.id}") { accessKey } }`);
    const result = await send({
      method: 'GET',
      path: `?query=${query}`,
      headers: { 'x-access-key': admin.key, 'apollo-require-preflight': 'true' },
    });
    expect(result.status).toBe(405);
    expectCleanJson(result);
    expect((await app.gql('{ me { id } }', { key: admin.key })).status).toBe(200);
  });

  it('a query over GET works (with the CSRF preflight header), and without it is refused', async () => {
    const query = encodeURIComponent('{ me { id } }');
    const ok = await send({
      method: 'GET',
      path: `?query=${query}`,
      headers: { 'x-access-key': admin.key, 'apollo-require-preflight': 'true' },
    });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text).data.me.id).toBe(admin.id);
    const csrf = await send({ method: 'GET', path: `?query=${query}` });
    expect(csrf.status).toBe(400);
  });

  it('a wrong content type is refused with 415 (or 400), as JSON', async () => {
    const result = await send({
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'x-access-key': admin.key },
      body: '{ me { id } }',
    });
    expect([400, 415]).toContain(result.status);
    expectCleanJson(result);
  });

  it('a missing query is a 400 with a JSON error', async () => {
    const result = await send({ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(result.status).toBe(400);
    expectCleanJson(result);
  });
});
