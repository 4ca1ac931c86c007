import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The repeated-key check walks a body JSON.parse took. JSON.parse takes nesting of any depth, so the walk must
 * too: a recursive walk threw RangeError (maximum call stack size) on a few thousand nested arrays or objects,
 * which answered 500 and logged at error level for a body of a few kilobytes.
 */
describe('a deeply nested JSON body is judged like any other, never a 5xx', () => {
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
    const body = (await response.json()) as { data?: any; errors?: Array<{ message: string; extensions?: any }> };
    const errorLines = app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50);
    return { status: response.status, body, errorLines };
  }

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
