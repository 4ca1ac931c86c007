import { createHash } from 'node:crypto';

import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A client's own mistakes in the shape of a request: each is a 4xx with a code that says what to fix,
 * never a 5xx or a masked INTERNAL_SERVER_ERROR, and never an error-level log line (anyone could fill the log).
 */
describe('request shapes: a client mistake is a clear 4xx', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info', NODE_ENV: 'development' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  async function post(body: unknown, key?: string) {
    const logsBefore = app.logs.length;
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'x-access-key': key } : {}) },
      body: JSON.stringify(body),
    });
    const json = (await response.json()) as {
      data?: unknown;
      errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
    };
    const errorLines = app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50);
    return { status: response.status, headers: response.headers, body: json, errorLines };
  }

  const operationCases: Array<[string, unknown, RegExp]> = [
    [
      'an operationName that names no operation',
      { query: 'query A { __typename }', operationName: 'B' },
      /Unknown operation named "B"/,
    ],
    [
      'an operationName for a document whose only operation is anonymous',
      { query: '{ __typename }', operationName: 'X' },
      /Unknown operation named "X"/,
    ],
    ['an empty operationName', { query: 'query A { __typename }', operationName: '' }, /Unknown operation named ""/],
    [
      'two named operations and no operationName',
      { query: 'query A { __typename } query B { __typename }' },
      /operationName/,
    ],
    [
      'a mutation and a query and no operationName',
      { query: 'query A { __typename } mutation M { logout }' },
      /operationName/,
    ],
  ];

  describe.each([
    ['without credentials', false],
    ['with a key', true],
  ])('%s', (_label, withKey) => {
    it.each(operationCases)('%s: 400 OPERATION_RESOLUTION_FAILURE', async (_case, body, message) => {
      const response = await post(body, withKey ? admin.key : undefined);
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(message),
          extensions: { code: 'OPERATION_RESOLUTION_FAILURE' },
        }),
      ]);
      expect(response.errorLines).toEqual([]);
    });

    it('a subscription: 400 saying there are none, nothing runs', async () => {
      const response = await post({ query: 'subscription { me { id } }' }, withKey ? admin.key : undefined);
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(/no subscriptions/i),
          extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
        }),
      ]);
      expect(response.body.data).toBeUndefined();
      expect(response.errorLines).toEqual([]);
    });

    it('a document holding a subscription next to a query: 400, as graphql-js 17 validates it', async () => {
      const response = await post(
        { query: 'query Q { __typename } subscription S { me { id } }', operationName: 'S' },
        withKey ? admin.key : undefined,
      );
      expect(response.status).toBe(400);
      expect(response.body.errors![0].extensions).toEqual({ code: 'GRAPHQL_VALIDATION_FAILED' });
      expect(response.errorLines).toEqual([]);
    });
  });

  it.each([
    ['without credentials', {}],
    ['with a malformed key', { 'x-access-key': 'cak_not-a-key' }],
    [
      'as a CORS preflight (no origins configured)',
      { origin: 'https://x.example', 'access-control-request-method': 'POST' },
    ],
  ])(
    'OPTIONS /graphql %s: 204 with Allow, not a CSRF refusal or a 401',
    async (_label, headers: Record<string, string>) => {
      const logsBefore = app.logs.length;
      const response = await fetch(app.url, { method: 'OPTIONS', headers });
      expect(response.status).toBe(204);
      expect(response.headers.get('allow')).toBe('GET, HEAD, POST, OPTIONS');
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(await response.text()).toBe('');
      expect(app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 40)).toEqual([]);
    },
  );

  it('the named operation of several still runs when operationName picks it', async () => {
    const response = await post(
      { query: 'query A { __typename } query B { me { id } }', operationName: 'B' },
      admin.key,
    );
    expect(response.status).toBe(200);
    expect(response.body.data).toEqual({ me: { id: admin.id } });
  });

  describe('automatic persisted queries are not offered: any persistedQuery extension is a 400', () => {
    const sha = (query: string) => createHash('sha256').update(query).digest('hex');
    it.each<[string, unknown]>([
      [
        'a hash that does not match the query',
        { query: '{ __typename }', extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } } },
      ],
      [
        'the hash of the query itself',
        { query: '{ __typename }', extensions: { persistedQuery: { version: 1, sha256Hash: sha('{ __typename }') } } },
      ],
      [
        'a hash alone (the first try of an APQ client)',
        { extensions: { persistedQuery: { version: 1, sha256Hash: sha('{ __typename }') } } },
      ],
      ['version 2', { query: '{ __typename }', extensions: { persistedQuery: { version: 2, sha256Hash: 'abc' } } }],
      ['no version', { query: '{ __typename }', extensions: { persistedQuery: { sha256Hash: 'abc' } } }],
      ['an empty object', { query: '{ __typename }', extensions: { persistedQuery: {} } }],
      ['a string', { query: '{ __typename }', extensions: { persistedQuery: 'x' } }],
      ['a number hash', { query: '{ __typename }', extensions: { persistedQuery: { version: 1, sha256Hash: 5 } } }],
    ])('%s', async (_label, body) => {
      const response = await post(body);
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(/persisted queries are not supported.*full query/i),
          extensions: { code: 'PERSISTED_QUERY_NOT_SUPPORTED' },
        }),
      ]);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(response.errorLines).toEqual([]);
    });
  });

  it.each<[string, unknown]>([
    ['an unknown extension', { query: '{ __typename }', extensions: { somethingElse: { a: 1 } } }],
    ['a null persistedQuery', { query: '{ __typename }', extensions: { persistedQuery: null } }],
    [
      'null variables, extensions and operationName',
      { query: '{ __typename }', variables: null, extensions: null, operationName: null },
    ],
  ])('%s is ignored and the query runs', async (_label, body) => {
    const response = await post(body);
    expect(response.status).toBe(200);
    expect(response.body.data).toEqual({ __typename: 'Query' });
  });

  it.each<[string, unknown]>([
    ['variables as an array', { query: '{ __typename }', variables: [] }],
    ['variables as a JSON string', { query: '{ __typename }', variables: '{}' }],
    ['variables as a number', { query: '{ __typename }', variables: 1 }],
    ['extensions as an array', { query: '{ __typename }', extensions: [1] }],
    ['extensions as a string', { query: '{ __typename }', extensions: '{}' }],
    ['operationName as a number', { query: '{ __typename }', operationName: 5 }],
    ['operationName as an object', { query: '{ __typename }', operationName: { a: 1 } }],
    ['query as a number', { query: 5 }],
    ['query as an object', { query: { kind: 'Document' } }],
    ['no query', { variables: {} }],
  ])('%s: 400 BAD_REQUEST', async (_label, body) => {
    const response = await post(body);
    expect(response.status).toBe(400);
    expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_REQUEST' });
    expect(response.errorLines).toEqual([]);
  });

  describe('GET', () => {
    const get = (search: string, headers: Record<string, string> = { 'apollo-require-preflight': 'true' }) =>
      fetch(`${app.url}?${search}`, { headers }).then(async (r) => ({
        status: r.status,
        headers: r.headers,
        body: (await r.json()) as any,
      }));

    it.each<[string, string, number, string]>([
      ['a subscription', `query=${encodeURIComponent('subscription { me { id } }')}`, 400, 'GRAPHQL_VALIDATION_FAILED'],
      [
        'an operationName that names no operation',
        `query=${encodeURIComponent('query A { __typename }')}&operationName=B`,
        400,
        'OPERATION_RESOLUTION_FAILURE',
      ],
      [
        'two operations and no operationName',
        `query=${encodeURIComponent('query A { __typename } query B { __typename }')}`,
        400,
        'OPERATION_RESOLUTION_FAILURE',
      ],
      ['a mutation', `query=${encodeURIComponent('mutation { logout }')}`, 405, 'BAD_REQUEST'],
      [
        'variables that are not JSON',
        `query=${encodeURIComponent('{ __typename }')}&variables=nope`,
        400,
        'BAD_REQUEST',
      ],
      [
        'extensions that are a JSON array',
        `query=${encodeURIComponent('{ __typename }')}&extensions=[]`,
        400,
        'BAD_REQUEST',
      ],
      [
        'a persisted query hash',
        `extensions=${encodeURIComponent(JSON.stringify({ persistedQuery: { version: 1, sha256Hash: 'abc' } }))}`,
        400,
        'PERSISTED_QUERY_NOT_SUPPORTED',
      ],
      ['query given twice', `query=${encodeURIComponent('{ __typename }')}&query=x`, 400, 'BAD_REQUEST'],
    ])('%s', async (_label, search, status, code) => {
      const logsBefore = app.logs.length;
      const response = await get(search);
      expect(response.status).toBe(status);
      expect(response.body.errors[0].extensions.code).toBe(code);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50)).toEqual([]);
    });
  });
  it.each(['PUT', 'DELETE', 'PATCH'])(
    '%s /graphql: 405 with Allow: GET, HEAD, POST, OPTIONS, as a GraphQL error',
    async (method) => {
      const body = method === 'DELETE' ? {} : { headers: { 'content-type': 'application/json' }, body: '{}' };
      const response = await fetch(app.url, { method, ...body });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD, POST, OPTIONS');
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(((await response.json()) as any).errors[0].extensions.code).toBe('BAD_REQUEST');
    },
  );
});

describe('Cache-Control: no-store on every /graphql answer', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '3' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  const noStore = (response: Response) => expect(response.headers.get('cache-control')).toBe('no-store');
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(app.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  it('a POST that reveals a key', async () => {
    const response = await post(JSON.stringify({ query: '{ me { accessKey } }' }), { 'x-access-key': admin.key });
    expect(((await response.json()) as any).data.me.accessKey).toBe(admin.key);
    noStore(response);
  });

  it('a GET query that reveals a key', async () => {
    const response = await fetch(`${app.url}?query=${encodeURIComponent('{ me { accessKey } }')}`, {
      headers: { 'x-access-key': admin.key, 'apollo-require-preflight': 'true' },
    });
    expect(response.status).toBe(200);
    noStore(response);
  });

  it('GraphQL errors, a 400, a 405, a bad JSON body, a CORS preflight', async () => {
    noStore(await post(JSON.stringify({ query: '{ me { id } }' })));
    noStore(await post(JSON.stringify({ query: '{ nope }' }), { 'x-access-key': admin.key }));
    noStore(await post('{"query": '));
    noStore(
      await fetch(`${app.url}?query=${encodeURIComponent('mutation { logout }')}`, {
        headers: { 'apollo-require-preflight': 'true' },
      }),
    );
    noStore(
      await fetch(app.url, {
        method: 'OPTIONS',
        headers: { origin: 'https://x.example', 'access-control-request-method': 'POST' },
      }),
    );
  });

  it.each([
    ['PUT', 'application/json', '{"x'],
    ['PATCH', 'text/x-nothing', 'x'],
  ])('%s with a broken %s body: refused as a method (405) before the body is read', async (method, type, body) => {
    const response = await fetch(app.url, { method, headers: { 'content-type': type }, body });
    expect(response.status).toBe(405);
    noStore(response);
  });

  it('401 and 429 from authentication', async () => {
    const unauthorized = await post(JSON.stringify({ query: '{ me { id } }' }), { 'x-access-key': 'cak_not-a-key' });
    expect(unauthorized.status).toBe(401);
    noStore(unauthorized);
    let limited: Response;
    do limited = await post(JSON.stringify({ query: '{ me { id } }' }), { 'x-access-key': 'cak_not-a-key' });
    while (limited.status === 401);
    expect(limited.status).toBe(429);
    noStore(limited);
  });
});
