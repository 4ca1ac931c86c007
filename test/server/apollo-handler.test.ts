import { request } from 'node:http';
import { connect } from 'node:net';

import type { ApolloServerPlugin } from '@apollo/server';

import { searchOf } from '../../src/server/apollo-handler';
import { createOrganization, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The /graphql handler (src/server/apollo-handler.ts) works out the query string only when Apollo reads it (GET),
 * with the WHATWG URL parse @as-integrations/fastify made on every request: what a GET's query string means, and
 * that a POST's is never read, as before.
 */
function send(
  url: string,
  path: string,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string },
): Promise<{ status: number; body: { data?: any; errors?: Array<{ message: string }> } }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    // node:http sends the path as written (a fragment too), where fetch would drop or re-encode parts of it.
    const sent = request({ host: hostname, port, path, method: init.method, headers: init.headers }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
    });
    sent.on('error', reject);
    sent.end(init.body);
  });
}

describe('the /graphql handler: the query string', () => {
  let app: TestApp;
  let admin: TestUser;
  let headers: Record<string, string>;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app);
    headers = { 'x-access-key': admin.key, 'apollo-require-preflight': 'true' };
  });
  afterAll(() => app.close());

  it("a GET's query comes from its query string: percent-escapes and '+' decoded, a fragment left out", async () => {
    const answer = await send(app.url, '/graphql?query=%7B+me+%7B+id%20email+%7D+%7D#&query={__typename}', {
      method: 'GET',
      headers,
    });
    expect(answer).toEqual({ status: 200, body: { data: { me: { id: admin.id, email: admin.email } } } });
  });

  it('a GET naming the query twice is refused, as Apollo refuses it', async () => {
    const answer = await send(app.url, '/graphql?query={me{id}}&query={me{email}}', { method: 'GET', headers });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0].message).toBe("The 'query' search parameter may only be specified once.");
  });

  it("a POST's query string is not read: the body's operation runs", async () => {
    const answer = await send(app.url, '/graphql?query=mutation%7B__typename%7D&operationName=x', {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ me { id } }' }),
    });
    expect(answer).toEqual({ status: 200, body: { data: { me: { id: admin.id } } } });
  });
});

/** Sends one raw HTTP request (the request line, Host and headers as written) and returns the whole answer. */
function raw(app: TestApp, text: string): Promise<{ status: number; head: string; body: string }> {
  const { port } = new URL(app.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(text));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('end', () => {
      const [head, body = ''] = answer.split('\r\n\r\n', 2);
      resolve({ status: Number(head.split(' ')[1]), head, body });
    });
    socket.on('error', reject);
  });
}

const errorLines = (lines: string[]) => lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
const TYPENAME = '{"data":{"__typename":"Query"}}\n';

describe.each([['false'], ['true']])('the /graphql handler, TRUST_PROXY=%s: odd requests', (trustProxy) => {
  let app: TestApp;
  let admin: TestUser;
  /** A GET of `target` with the admin's key and the preflight header, plus `extra` header lines. */
  const get = (target: string, extra = '', version = '1.1') =>
    raw(
      app,
      `GET ${target} HTTP/${version}\r\n${version === '1.1' ? 'Host: localhost\r\n' : ''}` +
        `X-Access-Key: ${admin.key}\r\nApollo-Require-Preflight: 1\r\n${extra}Connection: close\r\n\r\n`,
    );

  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info', TRUST_PROXY: trustProxy } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  // The integration built `protocol://hostname/` for every request: without Host, hostname threw (a 500, and since
  // the query string is read inside Apollo, a 500 without an error line); Host is optional in HTTP/1.0.
  it('a GET without Host (HTTP/1.0) is answered, no error line', async () => {
    const before = app.logs.length;
    const answer = await get('/graphql?query=%7B__typename%7D', '', '1.0');
    expect([answer.status, answer.body]).toEqual([200, TYPENAME]);
    expect(errorLines(app.logs.slice(before))).toEqual([]);
  });

  // Behind a trusted proxy request.protocol is X-Forwarded-Proto, which made `new URL` throw when no scheme.
  it.each([['a b'], ['1'], ['https, http']])(
    'a GET with X-Forwarded-Proto %p is answered, no error line',
    async (proto) => {
      const before = app.logs.length;
      const answer = await get('/graphql?query=%7B__typename%7D', `X-Forwarded-Proto: ${proto}\r\n`);
      expect([answer.status, answer.body]).toEqual([200, TYPENAME]);
      expect(errorLines(app.logs.slice(before))).toEqual([]);
    },
  );

  // A POST's query string is never read, so neither matters to it (before the handler, both were 500s too).
  it('a POST without Host (HTTP/1.0), or with X-Forwarded-Proto "a b", is answered, no error line', async () => {
    const body = JSON.stringify({ query: '{ __typename }' });
    const post = (version: string, extra: string) =>
      raw(
        app,
        `POST /graphql HTTP/${version}\r\n${version === '1.1' ? 'Host: localhost\r\n' : ''}${extra}` +
          `X-Access-Key: ${admin.key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
          `Connection: close\r\n\r\n${body}`,
      );
    const before = app.logs.length;
    for (const answer of [await post('1.0', ''), await post('1.1', 'X-Forwarded-Proto: a b\r\n')]) {
      expect([answer.status, answer.body]).toEqual([200, TYPENAME]);
    }
    expect(errorLines(app.logs.slice(before))).toEqual([]);
  });

  it('an absolute-form request target is read for its query string; a bad authority is a 400', async () => {
    const other = await get('http://other.example/graphql?query=%7B__typename%7D');
    expect([other.status, other.body]).toEqual([200, TYPENAME]);
    const before = app.logs.length;
    expect((await get('http://[::1/graphql?query=%7B__typename%7D')).status).toBe(400);
    expect(errorLines(app.logs.slice(before))).toEqual([]);
  });

  const NO_QUERY =
    'This is the GraphQL API: send a query with POST (Content-Type: application/json, {"query": "{ __typename }"}), ' +
    'or with GET as ?query=... and an Apollo-Require-Preflight header. Open /graphql in a browser for the explorer.';
  it.each<[string, number, string]>([
    ['/graphql?query=%7B__typename%7D%FF%E0%A4%ZZ%', 400, 'Syntax Error: Unexpected character: U+FFFD.'],
    ['/graphql?query=%7B__typename%7D&variables=%7B', 400, 'The variables search parameter contains invalid JSON.'],
    ['/graphql?query=%7B__typename%7D&extensions=[1', 400, 'The extensions search parameter contains invalid JSON.'],
    // No query (a fragment is not sent as a query string): how to send one (test/hardening/methods-and-content-types).
    ['/graphql#x?query=%7B__typename%7D', 400, NO_QUERY],
    ['/graphql?', 400, NO_QUERY],
    [
      '/graphql?query=mutation%7B__typename%7D',
      405,
      'GET requests only support query operations, not mutation operations',
    ],
  ])('GET %s: %d, said why, no error line', async (target, status, message) => {
    const before = app.logs.length;
    const answer = await get(target);
    expect(answer.status).toBe(status);
    expect((JSON.parse(answer.body) as { errors: Array<{ message: string }> }).errors[0].message).toBe(message);
    expect(errorLines(app.logs.slice(before))).toEqual([]);
  });

  it('a long query string (12,000 characters) is read whole', async () => {
    const answer = await get(`/graphql?x=${'a'.repeat(12_000)}&query=%7B__typename%7D`);
    expect([answer.status, answer.body]).toEqual([200, TYPENAME]);
  });

  describe('CSRF prevention still refuses what a browser sends without a preflight', () => {
    const csrf = expect.stringContaining('Cross-Site Request Forgery');
    const simpleGet = (extra = '') =>
      raw(
        app,
        `GET /graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: localhost\r\nX-Access-Key: ${admin.key}\r\n` +
          `${extra}Connection: close\r\n\r\n`,
      );

    it('a GET without apollo-require-preflight, or with it empty: 400', async () => {
      for (const answer of [await simpleGet(), await simpleGet('Apollo-Require-Preflight:\r\n')]) {
        expect(answer.status).toBe(400);
        expect(JSON.parse(answer.body)).toEqual({ errors: [{ message: csrf, extensions: { code: 'BAD_REQUEST' } }] });
      }
    });

    it('a GET is refused even with apollo-require-preflight on Object.prototype', async () => {
      const proto = Object.prototype as Record<string, unknown>;
      proto['apollo-require-preflight'] = 'true';
      proto['x-apollo-operation-name'] = 'x';
      try {
        const answer = await simpleGet();
        expect(answer.status).toBe(400);
        expect(answer.body).toContain('Cross-Site Request Forgery');
      } finally {
        delete proto['apollo-require-preflight'];
        delete proto['x-apollo-operation-name'];
      }
    });

    // Not a CSRF refusal any more: a text/plain body is not JSON, the 415 of every such body
    // (test/hardening/methods-and-content-types.test.ts).
    it('a POST with content-type text/plain runs nothing: 415', async () => {
      const body = JSON.stringify({ query: 'mutation { __typename }' });
      const answer = await raw(
        app,
        `POST /graphql HTTP/1.1\r\nHost: localhost\r\nX-Access-Key: ${admin.key}\r\nContent-Type: text/plain\r\n` +
          `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
      expect(answer.status).toBe(415);
      expect(answer.body).not.toContain('"data"');
    });
  });

  it('two X-Access-Key headers are one malformed key (joined): 401', async () => {
    const answer = await get('/graphql?query=%7Bme%7Bid%7D%7D', `X-Access-Key: ${admin.key}\r\n`);
    expect(answer.status).toBe(401);
    expect(answer.body).toContain('UNAUTHENTICATED');
  });

  it('HEAD answers as GET does (RFC 9110 9.3.2), without a body', async () => {
    const answer = await raw(
      app,
      `HEAD /graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: localhost\r\nX-Access-Key: ${admin.key}\r\n` +
        'Apollo-Require-Preflight: 1\r\nConnection: close\r\n\r\n',
    );
    expect([answer.status, answer.body]).toEqual([200, '']);
    expect(answer.head).toMatch(new RegExp(`content-length: ${TYPENAME.length}\r`, 'i'));
  });
});

describe('searchOf', () => {
  // WHATWG URL's `search` of the whole target: what the integration handed on (the host did not matter).
  const viaUrl = (target: string) => new URL(target, 'http://api.example:8080/').search;
  // No space or control character: a request target holds none (they end the request line's target; Node refuses
  // them), so URL's trimming of the whole input's ends never applies.
  const pieces = [
    'a',
    '=',
    '&',
    '?',
    '#',
    '+',
    '%',
    '%20',
    '%zz',
    '%E9',
    '%FF',
    "'",
    '"',
    '<',
    '>',
    'é',
    '\\',
    ';',
    '/',
  ];

  it('reads every query string as WHATWG URL does (pairs of pieces, origin- and absolute-form)', () => {
    for (const one of pieces) {
      for (const two of pieces) {
        for (const target of [
          `/graphql?q${one}x${two}y`,
          `/graphql${one}q=${two}`,
          `http://h.example/g?${one}=${two}#z?w`,
        ]) {
          expect([target, searchOf(target)]).toEqual([target, viaUrl(target)]);
        }
      }
    }
  });

  it("is '' without a query, or with an empty one", () => {
    expect([searchOf('/graphql'), searchOf('/graphql?'), searchOf('/graphql?#a'), searchOf('/graphql#?a=1')]).toEqual([
      '',
      '',
      '',
      '',
    ]);
  });
});

describe('the /graphql handler: credentials stay out of what Apollo plugins read', () => {
  let app: TestApp;
  let admin: TestUser;
  const seen: Array<Record<string, string>> = [];
  // A plugin after ours (as startTestApp's plugins are): it records the header map every Apollo plugin reads.
  const witness: ApolloServerPlugin = {
    async requestDidStart({ request }) {
      seen.push(Object.fromEntries(request.http!.headers));
    },
  };

  beforeAll(async () => {
    app = await startTestApp({ plugins: [witness] });
    admin = await createOrganization(app, 'Header Map Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  it.each([
    ['x-access-key', () => ({ 'x-access-key': admin.key })],
    ['authorization', async () => ({ authorization: `Bearer ${await login(app, admin)}` })],
  ])('a request authenticated by %s is answered, and no plugin sees that header', async (name, credentials) => {
    const presented = await credentials();
    seen.length = 0;
    const answer = await app.gql('{ me { id } }', { headers: { ...presented, 'x-custom-header': 'kept' } });
    expect(answer.body).toEqual({ data: { me: { id: admin.id } } });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ 'x-custom-header': 'kept', 'content-type': 'application/json' });
    expect(Object.keys(seen[0])).not.toContain('x-access-key');
    expect(Object.keys(seen[0])).not.toContain('authorization');
    expect(JSON.stringify(seen[0])).not.toContain(Object.values(presented)[0]);
  });
});
