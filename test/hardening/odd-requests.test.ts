import net from 'node:net';

import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** Sends one raw HTTP/1.1 request (fetch would normalize the Host and the path) and returns the status line. */
function raw(app: TestApp, params: { path: string; host: string }): Promise<string> {
  const { port } = new URL(app.url);
  const body = JSON.stringify({ query: '{ __typename }' });
  const request =
    `POST ${params.path} HTTP/1.1\r\nHost: ${params.host}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('end', () => resolve(answer.split('\r\n')[0]));
    socket.on('error', reject);
  });
}

/**
 * Requests shaped oddly on purpose: a Host that is not a host answers 400 (never 5xx, never an error-level log
 * line), and no credential in a path reaches the log, whatever hides it (`;`, `#`, percent-escapes).
 */
describe('odd request shapes', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info', LOG_REQUESTS: 'true' } });
    admin = await createOrganization(app, 'Odd Requests Org');
  });
  afterAll(() => app.close());

  const errorLines = (lines: string[]) => lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);

  it.each<[string, (key: string) => string]>([
    ['with userinfo', (key) => `user:${key}@evil.example`],
    ['with a space', () => 'a b'],
    ['with a slash', () => 'evil.example/path'],
    ['with a bad IPv6 literal', () => '[::1'],
    ['of 300 characters', () => 'h'.repeat(300)],
  ])('a Host %s: 400 BAD_REQUEST, no error-level line, no credential logged', async (_label, host) => {
    const before = app.logs.length;
    expect(await raw(app, { path: '/graphql', host: host(admin.key) })).toBe('HTTP/1.1 400 Bad Request');
    const lines = app.logs.slice(before);
    expect(errorLines(lines)).toEqual([]);
    expect(lines.join('\n')).not.toContain(admin.key);
  });

  it.each<[string]>([['localhost'], ['localhost:8080'], ['127.0.0.1:1'], ['[::1]:443'], ['api.example.com']])(
    'a Host %s is fine',
    async (host) => {
      expect(await raw(app, { path: '/graphql', host })).toBe('HTTP/1.1 200 OK');
    },
  );

  it.each<[string, (key: string) => string]>([
    ['a matrix parameter', (key) => `/graphql;access_key=${key}`],
    ['an encoded question mark', (key) => `/graphql%3Faccess_key=${key}`],
    ['an encoded semicolon', () => `/graphql%3Bpassword=hunter2hunter2`],
    ['a fragment', (key) => `/graphql#${key}`],
    ['a percent-encoded key', (key) => `/x/${key.replace(/a/g, '%61').replace(/k/g, '%6B')}`],
    ['a password after a semicolon on an unknown route', () => `/nothing;password=hunter2hunter2`],
  ])('a path with %s: the log holds no credential', async (_label, path) => {
    const before = app.logs.length;
    const status = await raw(app, { path: path(admin.key), host: 'localhost' });
    expect(status).not.toMatch(/^HTTP\/1\.1 5/);
    const lines = app.logs.slice(before);
    expect(lines.length).toBeGreaterThan(0);
    expect(errorLines(lines)).toEqual([]);
    const logged = lines.join('\n');
    expect(logged).not.toContain(admin.key);
    expect(logged).not.toContain(admin.key.slice(4, 20));
    expect(logged).not.toContain('hunter2');
  });

  it.each<[string, string, (key: string) => string]>([
    ['a mistyped route with the key in its query string', 'GET', (key) => `/graphq?access_key=${key}`],
    ['a key in the path of an unknown route', 'GET', (key) => `/keys/${key}`],
    ['a password after a semicolon', 'POST', () => `/login;password=hunter2hunter2`],
    ['another method on a page', 'PUT', (key) => `/admin/?k=${key}`],
  ])(
    '%s: 404 NOT_FOUND in the API error shape, no-store, and the answer repeats no credential',
    async (_label, method, path) => {
      const response = await fetch(new URL(path(admin.key), app.url), { method });
      expect(response.status).toBe(404);
      expect(response.headers.get('cache-control')).toBe('no-store');
      const text = await response.text();
      expect(text).not.toContain(admin.key);
      expect(text).not.toContain(admin.key.slice(4, 20));
      expect(text).not.toContain('hunter2');
      expect(JSON.parse(text)).toEqual({
        errors: [
          {
            message: expect.stringMatching(new RegExp(`^No route ${method} /`)),
            extensions: { code: 'NOT_FOUND' },
          },
        ],
      });
    },
  );

  it.each<[string, (key: string) => string]>([
    ['a bad percent-escape before the key in the query string', (key) => `/graphql%ff?access_key=${key}`],
    ['an overlong UTF-8 dot-dot', (key) => `/admin/%c0%ae%c0%ae/x?k=${key}`],
  ])(
    'a path that cannot be decoded (%s): 400 in the API error shape, repeating no credential',
    async (_label, path) => {
      const before = app.logs.length;
      const response = await fetch(new URL(path(admin.key), app.url));
      expect(response.status).toBe(400);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      const text = await response.text();
      expect(text).not.toContain(admin.key);
      expect(JSON.parse(text)).toEqual({
        errors: [
          {
            message: 'The path is not a valid URL: a percent-escape in it does not decode to UTF-8 text.',
            extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
          },
        ],
      });
      const lines = app.logs.slice(before);
      expect(errorLines(lines)).toEqual([]);
      expect(lines.join('\n')).not.toContain(admin.key);
    },
  );
});

describe('the Host check on a fresh instance (before any valid Host was seen)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info' } });
  });
  afterAll(() => app.close());

  // The check remembers the host it last found valid; nothing may pass for "already checked" before one was.
  it('an empty Host (the very first request): 400 BAD_REQUEST, not a 500 with an error-level line', async () => {
    expect(await raw(app, { path: '/graphql', host: '' })).toBe('HTTP/1.1 400 Bad Request');
    expect(app.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
  });
});
