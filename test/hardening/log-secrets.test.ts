import { generateAccessKey, generateSessionToken } from '../../src/access-keys/key-format';
import { createLogger, pathOnly } from '../../src/logger';
import { createOrganization, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** No credential reaches a log line, by any request shape: URLs, 404s, nested objects, messages. */
describe('no credential in the logs (development mode, request logging on)', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { NODE_ENV: 'development', LOG_LEVEL: 'info' } });
    admin = await createOrganization(app, 'Log Clinic', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  const base = () => app.url.replace(/\/graphql$/, '');

  it('requests carrying a key or a password in the URL, on every route and status', async () => {
    const password = 'hunter2-is-my-password';
    const key = encodeURIComponent(admin.key);
    const login = encodeURIComponent(`mutation { login(email: "${admin.email}", password: "${password}") { token } }`);
    const preflight = { 'apollo-require-preflight': 'true' };
    const logsBefore = app.logs.length;
    const answers = [
      await fetch(`${app.url}?query=${encodeURIComponent('{ __typename }')}&access_key=${key}`, { headers: preflight }),
      await fetch(`${app.url}?query=${login}`, { headers: preflight }),
      await fetch(`${app.url}?query=${login}&password=${password}`, { method: 'PUT' }),
      await fetch(`${base()}/nowhere?access_key=${key}&password=${password}`),
      await fetch(`${base()}/graphql/${key}`),
      await fetch(`${base()}/healthz?token=${key}`),
      await fetch(`${app.url}?${key}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"query":"{ __typename }"}',
      }),
    ];
    expect(answers.map((answer) => answer.status)).toEqual([200, 405, 405, 404, 404, 200, 200]);
    const lines = app.logs.slice(logsBefore);
    expect(lines.some((line) => line.includes('request completed'))).toBe(true);
    for (const line of lines) {
      expect(line).not.toContain(admin.key);
      expect(line).not.toContain(key);
      expect(line).not.toContain(password);
    }
    // The path is still there to read.
    expect(lines.some((line) => JSON.parse(line).path === '/nowhere')).toBe(true);
  });

  // A key right after a word character (`\b` found no boundary there), upper-cased, or percent-encoded so
  // that the one decoding the logger does leaves it encoded.
  it.each([
    ['after an underscore', (key: string) => `/_${key}`],
    ['after a letter', (key: string) => `/x${key}`],
    ['after an encoded underscore', (key: string) => `/a/%5F${key}`],
    ['with its prefix upper-cased', (key: string) => `/graphql/CAK_${key.slice(4)}`],
    ['encoded twice', (key: string) => `/a/%2563ak%255F${key.slice(4)}`],
  ])('a key in the URL %s: not in the request line, the 404 line or the answer', async (_case, urlOf) => {
    const logsBefore = app.logs.length;
    const response = await fetch(`${base()}${urlOf(admin.key)}`);
    expect(response.status).toBe(404);
    const answer = await response.text();
    const lines = app.logs.slice(logsBefore);
    expect(lines.some((line) => line.includes('request completed'))).toBe(true);
    // The key's body: whatever its prefix looks like, the random part is what must not be written.
    for (const text of [answer, ...lines]) expect(text).not.toContain(admin.key.slice(4));
  });

  it('a key in a header that a 415 message quotes (content type, charset)', async () => {
    const post = (headers: Record<string, string>, body: string) =>
      fetch(app.url, { method: 'POST', headers, body }).then(async (response) => ({
        status: response.status,
        text: await response.text(),
      }));
    const answers = [
      await post({ 'content-type': `text/x${admin.key}` }, '{}'),
      await post({ 'content-type': `application/json; charset=${admin.key}` }, '{}'),
    ];
    expect(answers.map((answer) => answer.status)).toEqual([415, 415]);
    for (const answer of answers) {
      expect(answer.text).not.toContain(admin.key.slice(4));
      expect(answer.text).toContain('[redacted]');
    }
  });

  it('a sign-in over POST with the password in the body', async () => {
    const logsBefore = app.logs.length;
    const response = await app.gql('mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { token } }', {
      variables: { e: admin.email, p: TEST_PASSWORD },
    });
    const token = response.body.data!.login.token as string;
    await app.gql('{ me { id } }', { headers: { authorization: `Bearer ${token}` } });
    for (const line of app.logs.slice(logsBefore)) {
      expect(line).not.toContain(TEST_PASSWORD);
      expect(line).not.toContain(token);
    }
  });
});

describe('the logger redacts at any depth', () => {
  function capture(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
    const lines: string[] = [];
    return {
      lines,
      logger: createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } }),
    };
  }

  const secrets = {
    password: 'secret-password-1',
    newPassword: 'secret-password-2',
    currentPassword: 'secret-password-3',
    accessKey: generateAccessKey(),
    token: generateSessionToken(),
    key: 'secret-key-value',
    authorization: 'Bearer secret-bearer',
    'x-access-key': 'secret-header-key',
    'X-Access-Key': 'secret-header-key-2',
  };

  function nest(depth: number, inner: object): object {
    let value: object = inner;
    for (let i = 0; i < depth; i++) value = i % 3 === 2 ? [{ level: i, value }] : { level: i, value };
    return value;
  }

  it.each([1, 2, 5, 40])('secret fields %i levels down, in objects and arrays', (depth) => {
    const { lines, logger } = capture();
    logger.info({ request: nest(depth, { ...secrets, email: 'kept@example.test' }) }, 'something happened');
    expect(lines).toHaveLength(1);
    for (const value of Object.values(secrets)) expect(lines[0]).not.toContain(value);
    expect(lines[0]).toContain('kept@example.test');
    expect(lines[0]).toContain('[redacted]');
  });

  it('at the top level, in child bindings, inside errors and their causes', () => {
    const { lines, logger } = capture();
    const error = Object.assign(
      new Error('failed', {
        cause: Object.assign(new Error('inner'), { variables: { input: { password: secrets.password } } }),
      }),
      {
        headers: { authorization: secrets.authorization },
      },
    );
    logger
      .child({ token: secrets.token })
      .error({ err: error, password: secrets.newPassword, accessKey: secrets.accessKey }, 'failed');
    expect(lines).toHaveLength(1);
    for (const value of Object.values(secrets)) expect(lines[0]).not.toContain(value);
    expect(JSON.parse(lines[0]).err.message).toMatch(/failed/);
  });

  it('a key or session token inside any string, the message included', () => {
    const { lines, logger } = capture();
    logger.warn({ note: `the client sent ${secrets.accessKey} in a URL` }, `Route GET:/x/${secrets.token} not found`);
    expect(lines[0]).not.toContain(secrets.accessKey);
    expect(lines[0]).not.toContain(secrets.token);
    expect(lines[0]).toContain('not found');
  });

  it('a key or session token after a word character, upper-cased or percent-encoded, in a message or a field', () => {
    const { lines, logger } = capture();
    const upper = `CAS_${secrets.token.slice(4)}`;
    logger.warn(
      { note: `x_${secrets.accessKey}`, url: `/a/c%61k%5F${secrets.accessKey.slice(4)}` },
      `Route GET:/x${upper} not found`,
    );
    expect(lines[0]).not.toContain(secrets.accessKey.slice(4));
    expect(lines[0]).not.toContain(secrets.token.slice(4));
    expect(JSON.parse(lines[0])).toMatchObject({ note: 'x_[redacted]', url: '/a/[redacted]' });
  });

  it('a key percent-encoded in a path that does not decode (the path is logged as it came)', () => {
    const body = secrets.accessKey.slice(4);
    expect(pathOnly(`/%zz/c%61k_${body}?x=1`)).toBe('/%zz/[redacted]');
    expect(pathOnly(`/%zz/%2563%41K%5f${body}`)).toBe('/%zz/[redacted]');
  });

  it('survives a cycle', () => {
    const { lines, logger } = capture();
    const looped: Record<string, unknown> = { password: secrets.password };
    looped.self = looped;
    logger.info({ looped }, 'cycle');
    expect(lines[0]).not.toContain(secrets.password);
  });
});
