import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A JSON body whose object names one key twice reads two ways (RFC 8259 4: "the behavior of software that
 * receives such an object is unpredictable"): JSON.parse keeps the last, a proxy, a WAF or a log reader in front
 * may keep the first. So a body such as {"query": A, "query": B} ran B while whatever looked at the request saw
 * A, and {"role": "MEMBER", "role": "ADMIN"} in variables made an ADMIN. As a GET naming `query` twice, a
 * repeated credential header and a Content-Type sent twice, it is a 400 that runs nothing.
 */
describe('a JSON body naming one key twice in an object is a 400 that runs nothing', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info', NODE_ENV: 'development' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  async function postRaw(text: string) {
    const logsBefore = app.logs.length;
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-access-key': admin.key },
      body: text,
    });
    const body = (await response.json()) as {
      data?: any;
      errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
    };
    const errorLines = app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50);
    return { status: response.status, body, errorLines };
  }

  const createUser = 'mutation($i: CreateUserInput!) { createUser(input: $i) { id role } }';

  it.each<[string, string, RegExp]>([
    ['"query" twice', '{"query":"{ me { name } }","query":"{ me { id } }"}', /"query"/],
    [
      '"query" twice, once spelled with an escape',
      '{"query":"{ me { name } }","\\u0071uery":"{ me { id } }"}',
      /"query"/,
    ],
    [
      '"operationName" twice',
      '{"query":"query A { me { name } } query B { me { id } }","operationName":"A","operationName":"B"}',
      /"operationName"/,
    ],
    [
      '"variables" twice',
      `{"query":"query($f: Int) { users(first: $f) { totalCount } }","variables":{"f":1},"variables":{"f":2}}`,
      /"variables"/,
    ],
    [
      'a key twice inside variables',
      JSON.stringify({ query: createUser, variables: { i: { email: 'dup-role@example.com', name: 'Dup' } } }).replace(
        '"name":"Dup"',
        '"name":"Dup","role":"MEMBER","role":"ADMIN"',
      ),
      /twice/,
    ],
  ])('%s: 400 BAD_REQUEST, nothing runs', async (_label, text, message) => {
    const response = await postRaw(text);
    expect(response.status).toBe(400);
    expect(response.body.data).toBeUndefined();
    expect(response.body.errors).toHaveLength(1);
    expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_REQUEST' });
    expect(response.body.errors![0].message).toMatch(message);
    expect(response.errorLines).toEqual([]);
    const made = await app.dataSource.query(`SELECT 1 FROM users WHERE email = 'dup-role@example.com'`);
    expect(made).toEqual([]);
  });

  it('a key given as a duplicated object key is not echoed', async () => {
    const response = await postRaw(`{"query":"{ me { id } }","variables":{"${admin.key}":1,"${admin.key}":2}}`);
    expect(response.status).toBe(400);
    expect(JSON.stringify(response.body)).not.toContain(admin.key.slice(4));
  });

  it.each<[string, string]>([
    ['the same key in sibling objects', '{"query":"{ me { id } }","variables":{"a":{"x":1},"b":{"x":2}}}'],
    ['the same key in objects of an array', '{"query":"{ me { id } }","extensions":{"list":[{"x":1},{"x":2}]}}'],
    [
      'a value holding a quoted key twice',
      '{"query":"{ me { id } }","variables":{"s":"\\"a\\":1,\\"a\\":2","t":"\\\\"}}',
    ],
    ['keys that differ only in case', '{"query":"{ me { id } }","variables":{"a":1,"A":2}}'],
  ])('%s: still runs', async (_label, text) => {
    const response = await postRaw(text);
    expect(response.status).toBe(200);
    expect(response.body.data).toEqual({ me: { id: admin.id } });
  });

  describe('GET: variables and extensions of the query string are JSON too', () => {
    const get = (params: Record<string, string>) =>
      fetch(`${app.url}?${new URLSearchParams(params)}`, {
        headers: { 'apollo-require-preflight': 'true', 'x-access-key': admin.key },
      }).then(async (response) => ({ status: response.status, body: (await response.json()) as any }));
    const query = 'query($f: Int) { users(first: $f) { totalCount } }';

    it.each<[string, Record<string, string>]>([
      ['variables naming a key twice', { query, variables: '{"f":1,"f":2}' }],
      ['extensions naming a key twice', { query, extensions: '{"a":{"b":1,"b":2}}' }],
    ])('%s: 400 BAD_REQUEST, nothing runs', async (_label, params) => {
      const response = await get(params);
      expect(response.status).toBe(400);
      expect(response.body.data).toBeUndefined();
      expect(response.body.errors[0].extensions.code).toBe('BAD_REQUEST');
      expect(response.body.errors[0].message).toMatch(/twice/);
    });

    it('variables naming each key once: runs', async () => {
      const response = await get({ query, variables: '{"f":1}' });
      expect(response.status).toBe(200);
      expect(response.body.data.users.totalCount).toBe(1);
    });
  });

  /**
   * The check walks a body JSON.parse took, and JSON.parse takes nesting of any depth, so the walk must too: a
   * recursive walk ran out of stack on a few thousand nested arrays or objects, and the body, valid and naming
   * each key once, was refused with a 400 blaming a "__proto__" key.
   */
  describe('a deeply nested body is judged like any other', () => {
    const depth = 20_000;
    const deepArray = '['.repeat(depth) + ']'.repeat(depth);
    const deepObject = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

    it.each<[string, string]>([
      ['nested arrays in extensions', `{"query":"{ me { id } }","extensions":{"x":${deepArray}}}`],
      ['nested objects in extensions', `{"query":"{ me { id } }","extensions":{"x":${deepObject}}}`],
    ])('%s, each key once: runs, nothing logged at error level', async (_label, text) => {
      const response = await postRaw(text);
      expect(response.errorLines).toEqual([]);
      expect(response.status).toBe(200);
      expect(response.body.data).toEqual({ me: { id: admin.id } });
    });

    it('a key named twice under deep nesting: 400', async () => {
      const text = `{"query":"{ me { id } }","extensions":{"x":${'{"a":'.repeat(depth)}{"b":1,"b":2}${'}'.repeat(depth)}}}`;
      const response = await postRaw(text);
      expect(response.errorLines).toEqual([]);
      expect(response.status).toBe(400);
      expect(response.body.errors![0].message).toMatch(/twice/);
    });

    it('GET variables nested deeply: never a 5xx', async () => {
      const logsBefore = app.logs.length;
      const params = new URLSearchParams({
        query: '{ me { id } }',
        extensions: `{"x":${'['.repeat(3000)}${']'.repeat(3000)}}`,
      });
      const response = await fetch(`${app.url}?${params}`, {
        headers: { 'apollo-require-preflight': 'true', 'x-access-key': admin.key },
      });
      expect(app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50)).toEqual([]);
      expect(response.status).toBeLessThan(500);
    });
  });
});
