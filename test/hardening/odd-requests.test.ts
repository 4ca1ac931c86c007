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

/** An answer read off a raw socket: its status line, its headers (names in lower case) and its body. */
interface RawAnswer {
  status: string;
  headers: Map<string, string>;
  body: string;
}

/** Splits what the server wrote (one answer, the connection closed after it) into a RawAnswer. */
function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  const [status, ...lines] = text.slice(0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status, headers, body: text.slice(end + 4) };
}

/** Sends `request` as it is, byte for byte, and reads everything the server writes until it closes. */
function exchange(app: TestApp, request: string): Promise<string> {
  const { port } = new URL(app.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

/**
 * What RFC 9112 (3.2) and RFC 9110 (10.1.1) ask of Host and Expect, answered by the API itself in its error
 * shape: Node's own answers (a bare 400 for an HTTP/1.1 request without Host, a bare 417 for an expectation
 * other than 100-continue) had no body and none of the security headers, and a Host sent twice was served by
 * the first while a proxy in front may route by the last.
 */
describe('Host and Expect as HTTP/1.1 asks', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info' } });
  });
  afterAll(() => app.close());

  const body = JSON.stringify({ query: '{ __typename }' });
  const post = (headerLines: string) =>
    `POST /graphql HTTP/1.1\r\n${headerLines}Content-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;

  const expectSecurityHeaders = (answer: RawAnswer) => {
    expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
    expect(answer.headers.get('x-frame-options')).toBe('DENY');
    expect(answer.headers.get('referrer-policy')).toBe('no-referrer');
    expect(answer.headers.get('cache-control')).toBe('no-store');
    expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8');
  };

  const expectBadRequest = (answer: RawAnswer, message: string) => {
    expect(answer.status).toBe('HTTP/1.1 400 Bad Request');
    expectSecurityHeaders(answer);
    const requestId = answer.headers.get('x-request-id');
    expect(requestId).toEqual(expect.any(String));
    expect(JSON.parse(answer.body)).toEqual({
      errors: [{ message, extensions: { code: 'BAD_REQUEST', requestId } }],
    });
  };

  const TWICE = 'Send the Host header once: this request has more than one.';

  it.each<[string, string]>([
    ['with different values', 'Host: localhost\r\nHost: evil.example\r\n'],
    ['with the same value', 'Host: localhost\r\nHost: localhost\r\n'],
    ['in other cases of its name', 'host: localhost\r\nHOST: evil.example\r\n'],
    ['apart, with other headers between', 'Host: localhost\r\nAccept: */*\r\nhOsT: localhost\r\n'],
  ])('Host twice %s: 400 BAD_REQUEST in the API error shape', async (_label, hostLines) => {
    expectBadRequest(parseAnswer(await exchange(app, post(hostLines))), TWICE);
  });

  it('Host twice, the second past 2,000 other header lines (Node keeps 2,000 by default): the same 400', async () => {
    const lines = 'a:\r\n'.repeat(2000);
    expectBadRequest(
      parseAnswer(await exchange(app, post(`Host: localhost\r\n${lines}Host: evil.example\r\n`))),
      TWICE,
    );
  });

  it('Host twice on an unknown route: the same 400, not a 404', async () => {
    const answer = parseAnswer(
      await exchange(app, 'GET /nothing HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
    );
    expectBadRequest(answer, TWICE);
  });

  it('an HTTP/1.1 request without Host: 400 BAD_REQUEST in the API error shape, with the security headers', async () => {
    expectBadRequest(
      parseAnswer(await exchange(app, post(''))),
      'An HTTP/1.1 request must name its Host: send a Host header.',
    );
  });

  it('an HTTP/1.0 request without Host is served', async () => {
    const answer = parseAnswer(await exchange(app, 'GET /healthz HTTP/1.0\r\n\r\n'));
    expect(answer.status).toBe('HTTP/1.1 200 OK');
    expect(JSON.parse(answer.body)).toEqual({ status: 'ok' });
  });

  it('an HTTP/1.1 request with one Host is served', async () => {
    const answer = parseAnswer(await exchange(app, post('Host: localhost\r\n')));
    expect(answer.status).toBe('HTTP/1.1 200 OK');
    expect(JSON.parse(answer.body)).toEqual({ data: { __typename: 'Query' } });
  });

  it.each<[string]>([['200-ok'], ['something-else=1']])(
    'Expect: %s: 417 EXPECTATION_FAILED in the API error shape, with the security headers',
    async (expectation) => {
      const answer = parseAnswer(await exchange(app, post(`Host: localhost\r\nExpect: ${expectation}\r\n`)));
      expect(answer.status).toBe('HTTP/1.1 417 Expectation Failed');
      expectSecurityHeaders(answer);
      expect(JSON.parse(answer.body)).toEqual({
        errors: [
          {
            message: 'The only expectation this server meets is Expect: 100-continue: send the request without it.',
            extensions: { code: 'EXPECTATION_FAILED' },
          },
        ],
      });
    },
  );

  it('Expect: 200-ok pipelined behind another request: answered after it, not in the middle of it', async () => {
    const text = await exchange(
      app,
      'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n' + post('Host: localhost\r\nExpect: 200-ok\r\n'),
    );
    const second = text.indexOf('HTTP/1.1 417 Expectation Failed');
    expect(text.startsWith('HTTP/1.1 200 OK')).toBe(true);
    expect(second).toBeGreaterThan(0);
    expect(text.slice(0, second)).toContain('{"status":"ok"}');
  });

  it('a mutation pipelined behind a refused Expect is not run (its answer could never be sent)', async () => {
    const admin = await createOrganization(app, 'Expect Pipeline Org');
    const mutation = JSON.stringify({
      query: 'mutation { createUser(input: { email: "behind-417@acme.example", name: "Pat", role: MEMBER }) { id } }',
    });
    const text = await exchange(
      app,
      post('Host: localhost\r\nExpect: 200-ok\r\n').replace('Connection: close\r\n', '') +
        `POST /graphql HTTP/1.1\r\nHost: localhost\r\nX-Access-Key: ${admin.key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(mutation)}\r\n\r\n${mutation}`,
    );
    expect(text.startsWith('HTTP/1.1 417 Expectation Failed')).toBe(true);
    expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    const again = await app.gql(
      'mutation { createUser(input: { email: "behind-417@acme.example", name: "Pat", role: MEMBER }) { id } }',
      { key: admin.key },
    );
    expect(again.body.errors).toBeUndefined();
  });

  it('a request Node cannot parse, pipelined behind a good one: the good one is answered first, then the 400', async () => {
    const text = await exchange(
      app,
      post('Host: localhost\r\n').replace('Connection: close\r\n', '') +
        'GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    expect(text.match(/^HTTP\/1\.1 \d+/gm)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 400']);
    expect(text).toContain('{"data":{"__typename":"Query"}}');
    expect(text.indexOf('{"data"')).toBeLessThan(text.indexOf('HTTP/1.1 400'));
  });

  it('Expect: 100-continue: 100 Continue, then the body, then the usual 200', async () => {
    const { port } = new URL(app.url);
    const text = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () =>
        socket.write(
          'POST /graphql HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n' +
            `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        ),
      );
      let answer = '';
      let sent = false;
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        answer += chunk;
        // The body goes only once the server asked for it.
        if (!sent && answer.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
          sent = true;
          socket.write(body);
        }
      });
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });
    expect(text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')).toBe(true);
    const answer = parseAnswer(text.slice('HTTP/1.1 100 Continue\r\n\r\n'.length));
    expect(answer.status).toBe('HTTP/1.1 200 OK');
    expect(JSON.parse(answer.body)).toEqual({ data: { __typename: 'Query' } });
  });

  it('Expect on an HTTP/1.0 request is not looked at (RFC 9110 10.1.1): served', async () => {
    const answer = parseAnswer(await exchange(app, 'GET /healthz HTTP/1.0\r\nExpect: 200-ok\r\n\r\n'));
    expect(answer.status).toBe('HTTP/1.1 200 OK');
  });

  it('none of these answers writes an error-level line', () => {
    expect(app.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
  });
});

describe('X-Forwarded-Host behind a trusted proxy (TRUST_PROXY=1)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { TRUST_PROXY: '1' } });
  });
  afterAll(() => app.close());

  const status = async (request: string) => (await exchange(app, request)).split('\r\n')[0];

  it.each<[string, string]>([
    ['HTTP/1.1 with Host', 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n'],
    ['HTTP/1.0 without Host', 'GET /healthz HTTP/1.0\r\n'],
  ])('%s: an X-Forwarded-Host that is not a host is a 400, a host name is served', async (_label, head) => {
    expect(await status(`${head}X-Forwarded-Host: a b\r\n\r\n`)).toBe('HTTP/1.1 400 Bad Request');
    expect(await status(`${head}X-Forwarded-Host: user:pw@evil.example\r\n\r\n`)).toBe('HTTP/1.1 400 Bad Request');
    expect(await status(`${head}X-Forwarded-Host: api.example.com\r\n\r\n`)).toBe('HTTP/1.1 200 OK');
    expect(await status(`${head}\r\n`)).toBe('HTTP/1.1 200 OK');
  });
});
