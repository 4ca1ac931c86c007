import { METHODS } from 'node:http';
import { connect } from 'node:net';

import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * What /graphql answers to a method it does not offer or a body it does not read: each refusal the API's own
 * (the API's error shape, a status that says what is wrong, `Cache-Control: no-store`, no error-level log line),
 * never Apollo's CSRF text for what is simply not JSON, never a 404 for a method on a path that exists.
 */

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends one raw HTTP/1.1 request to /graphql (header lines as written, repeats included) and reads the answer. */
function raw(
  app: TestApp,
  params: { method: string; headers?: string; body?: string; target?: string },
): Promise<RawAnswer> {
  const { port } = new URL(app.url);
  const body = params.body ?? '';
  const text =
    `${params.method} ${params.target ?? '/graphql'} HTTP/1.1\r\nHost: localhost\r\n${params.headers ?? ''}` +
    `${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}Connection: close\r\n\r\n${body}`;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(text));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('close', () => {
      const [head, rest = ''] = answer.split('\r\n\r\n', 2);
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest });
    });
    socket.on('error', reject);
  });
}

const QUERY = JSON.stringify({ query: '{ __typename }' });
const MUTATION = JSON.stringify({ query: 'mutation { logout }' });
const JSON_TYPE = 'application/json; charset=utf-8';
const ALLOW = 'GET, HEAD, POST, OPTIONS';
/**
 * Every other method Node's HTTP parser takes (WebDAV's PROPFIND, MKCOL, LOCK, SEARCH, ...; CalDAV, UPnP, ...)
 * beyond the ones Fastify routes itself, which the test of PUT, DELETE, PATCH, TRACE and QUERY covers.
 */
const OTHER_METHODS = METHODS.filter(
  (method) =>
    !['GET', 'HEAD', 'POST', 'OPTIONS', 'CONNECT', 'PUT', 'DELETE', 'PATCH', 'TRACE', 'QUERY'].includes(method),
);

describe.each([
  ['development', { NODE_ENV: 'development' }],
  ['production', { NODE_ENV: 'production', ACCESS_KEY_SECRET: Buffer.alloc(32, 7).toString('base64') }],
] as const)('/graphql refuses wrong methods and content types in its own words (%s)', (mode, env) => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { ...env, LOG_LEVEL: 'info' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  /** Sends, then checks what every refusal here shares: no-store, and no error-level line in the log. */
  async function send(params: Parameters<typeof raw>[1]): Promise<RawAnswer> {
    const before = app.logs.length;
    const answer = await raw(app, params);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(app.logs.slice(before).filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
    return answer;
  }

  function expectRefusal(answer: RawAnswer, status: number, message: RegExp): void {
    expect(answer.status).toBe(status);
    expect(answer.headers['content-type']).toBe(JSON_TYPE);
    const body = JSON.parse(answer.body) as { errors: Array<{ message: string; extensions: Record<string, unknown> }> };
    expect(body).toEqual({
      errors: [
        {
          message: expect.stringMatching(message),
          extensions: { code: 'BAD_REQUEST', requestId: answer.headers['x-request-id'] },
        },
      ],
    });
    expect(answer.body).not.toMatch(/Cross-Site Request Forgery|"data"/);
  }

  describe('a POST whose body is not JSON: 415, naming what to send', () => {
    it.each([
      ['text/plain', 'text/plain'],
      ['text/plain; charset=utf-8', 'text/plain'],
      ['TEXT/Plain', 'TEXT/Plain'],
      ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded'],
      ['multipart/form-data; boundary=x', 'multipart/form-data'],
      ['application/graphql', 'application/graphql'],
    ])('Content-Type: %s, with a key, runs nothing', async (type, named) => {
      for (const body of [QUERY, MUTATION, '']) {
        const answer = await send({
          method: 'POST',
          headers: `X-Access-Key: ${admin.key}\r\nContent-Type: ${type}\r\n`,
          body,
        });
        expectRefusal(
          answer,
          415,
          new RegExp(
            `^Send the request body as JSON \\(Content-Type: application/json\\), not ${named.replace('/', '\\/')}\\.$`,
          ),
        );
      }
    });

    it('no Content-Type, with or without a body, or with apollo-require-preflight: 415', async () => {
      for (const [headers, body] of [
        ['', QUERY],
        ['', ''],
        ['Apollo-Require-Preflight: 1\r\n', ''],
      ]) {
        const answer = await send({ method: 'POST', headers: `X-Access-Key: ${admin.key}\r\n${headers}`, body });
        expectRefusal(answer, 415, /^Send the request body as JSON \(Content-Type: application\/json\)\.$/);
      }
    });

    it('application/json with preflight headers still runs (the refusals above are about the body only)', async () => {
      const answer = await send({ method: 'POST', headers: 'Content-Type: application/json\r\n', body: QUERY });
      expect([answer.status, answer.body]).toEqual([200, '{"data":{"__typename":"Query"}}\n']);
    });
  });

  it.each([
    ['"{ __typename }"', 'a string'],
    ['5', 'a number'],
    ['true', 'a boolean'],
    ['null', 'null'],
    // Apollo blamed the Content-Type for an empty object too, and answered an array (a batch) in its own words.
    ['{}', 'an empty object'],
    ['[{"query":"{ __typename }"}]', 'an array \\(one operation per request: batches are not taken\\)'],
  ])('a JSON body that is no object (%s): 400 saying what to send, not "invalid Content-Type"', async (body, named) => {
    const answer = await send({ method: 'POST', headers: 'Content-Type: application/json\r\n', body });
    expectRefusal(
      answer,
      400,
      new RegExp(`^The body must be a JSON object with the operation in "query" .*, not ${named}\\.$`),
    );
  });

  describe('an ambiguous Content-Type: 400, whichever comes first', () => {
    it.each([
      ['two Content-Type lines', 'Content-Type: application/json\r\nContent-Type: text/plain\r\n', /Content-Type once/],
      [
        'two Content-Type lines, JSON second',
        'Content-Type: text/plain\r\ncontent-type: application/json\r\n',
        /Content-Type once/,
      ],
      [
        'two identical Content-Type lines',
        'Content-Type: application/json\r\nContent-Type: application/json\r\n',
        /Content-Type once/,
      ],
      ['two charsets', 'Content-Type: application/json; charset=utf-8; charset=latin1\r\n', /charset once/],
      [
        'two charsets, UTF-8 second',
        'Content-Type: application/json; CHARSET=latin1;charset="utf-8"\r\n',
        /charset once/,
      ],
      ['two identical charsets', 'Content-Type: application/json; charset=utf-8; charset=utf-8\r\n', /charset once/],
    ])('%s', async (_label, headers) => {
      for (const method of ['POST', 'GET']) {
        const answer = await send({
          method,
          target: method === 'GET' ? '/graphql?query=%7B__typename%7D' : '/graphql',
          headers: `X-Access-Key: ${admin.key}\r\n${headers}`,
          body: method === 'POST' ? MUTATION : '',
        });
        expectRefusal(answer, 400, /^Send Content-Type once|^Name the charset once/);
      }
    });
  });

  describe('methods', () => {
    it('OPTIONS: 204 with Allow listing HEAD too, whatever body it carries (never read)', async () => {
      for (const [headers, body] of [
        ['', ''],
        ['', QUERY],
        ['Content-Type: application/json\r\n', '{broken'],
        ['Content-Type: text/plain\r\n', 'text'],
      ]) {
        const answer = await send({ method: 'OPTIONS', headers, body });
        expect([answer.status, answer.headers.allow, answer.body]).toEqual([204, ALLOW, '']);
      }
    });

    it.each(['PUT', 'DELETE', 'PATCH', 'TRACE', 'QUERY'])('%s: 405 with the Allow of OPTIONS', async (method) => {
      const withBody = method !== 'TRACE' && method !== 'DELETE';
      const answer = await send({
        method,
        headers: `X-Access-Key: ${admin.key}\r\n${withBody ? 'Content-Type: application/json\r\n' : ''}`,
        body: withBody ? QUERY : '',
      });
      expectRefusal(answer, 405, /^\/graphql answers GET \(queries\), HEAD and POST\.$/);
      expect(answer.headers.allow).toBe(ALLOW);
    });

    it.each(OTHER_METHODS)('%s, with or without a body: 405 with the Allow of OPTIONS, not 404', async (method) => {
      for (const [headers, body] of [
        ['', ''],
        ['Content-Type: application/xml\r\n', '<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>'],
        ['Content-Type: application/json\r\n', QUERY],
      ]) {
        const answer = await send({ method, headers: `X-Access-Key: ${admin.key}\r\n${headers}`, body });
        expectRefusal(answer, 405, /^\/graphql answers GET \(queries\), HEAD and POST\.$/);
        expect(answer.headers.allow).toBe(ALLOW);
      }
    });

    // Fastify routes none of these (no semicolon delimiter; an escaped ; or ? is part of the path), and a POST
    // there was told "/graphql answers GET (queries), HEAD and POST" with Allow naming POST: the 405 came from
    // the path of the log line, cut at ";" and decoded, not from the path that was routed.
    it.each(['/graphql;x', '/graphql%3Bx', '/graphql%3Fquery=1'])(
      'a POST to %s, which is not /graphql: 404 naming the route, not a 405 that offers POST',
      async (target) => {
        const answer = await raw(app, {
          method: 'POST',
          target,
          headers: `X-Access-Key: ${admin.key}\r\nContent-Type: application/json\r\n`,
          body: QUERY,
        });
        expect(answer.status).toBe(404);
        expect(answer.headers.allow).toBeUndefined();
        expect(JSON.parse(answer.body)).toMatchObject({
          errors: [
            { message: expect.stringMatching(/answers at \/graphql exactly/), extensions: { code: 'NOT_FOUND' } },
          ],
        });
      },
    );

    it('those methods on a path that does not exist are still 404', async () => {
      for (const method of ['PROPFIND', 'MKCOL', 'SEARCH']) {
        expect((await raw(app, { method, target: '/nowhere' })).status).toBe(404);
      }
    });

    it.each([
      ['PUT', ''],
      ['QUERY', ''],
      ['PATCH', 'Content-Type: text/plain\r\n'],
      ['DELETE', 'Content-Type: application/json\r\n'],
    ])(
      '%s with a body that is not JSON (%j): the method is refused first (405), not the body',
      async (method, type) => {
        const answer = await send({ method, headers: type, body: 'not json' });
        expectRefusal(answer, 405, /^\/graphql answers GET \(queries\), HEAD and POST\.$/);
        expect(answer.headers.allow).toBe(ALLOW);
      },
    );

    it('HEAD of a GET query answers as the GET does, without a body', async () => {
      const headers = `X-Access-Key: ${admin.key}\r\nApollo-Require-Preflight: 1\r\n`;
      const target = '/graphql?query=%7B__typename%7D';
      const get = await send({ method: 'GET', headers, target });
      const head = await send({ method: 'HEAD', headers, target });
      expect([get.status, get.headers['content-type']]).toEqual([200, JSON_TYPE]);
      expect([head.status, head.headers['content-type'], head.headers['content-length'], head.body]).toEqual([
        200,
        JSON_TYPE,
        get.headers['content-length'],
        '',
      ]);
    });

    it('HEAD of a GET mutation is refused as the GET is (405), and runs nothing', async () => {
      const target = `/graphql?query=${encodeURIComponent('mutation { logout }')}`;
      const headers = `X-Access-Key: ${admin.key}\r\nApollo-Require-Preflight: 1\r\n`;
      const get = await send({ method: 'GET', headers, target });
      const head = await send({ method: 'HEAD', headers, target });
      expect(get.status).toBe(405);
      expect([head.status, head.headers.allow, head.body]).toEqual([get.status, get.headers.allow, '']);
    });

    it('CONNECT /graphql: 405 with Allow, in the API error shape', async () => {
      const answer = await raw(app, { method: 'CONNECT' });
      expect(answer.status).toBe(405);
      expect(answer.headers.allow).toBe(ALLOW);
      expect(answer.headers['content-type']).toBe(JSON_TYPE);
      expect(answer.headers['cache-control']).toBe('no-store');
      expect((JSON.parse(answer.body) as any).errors[0].extensions.code).toBe('BAD_REQUEST');
    });

    it("CONNECT to a proxy's host:port: 501, this server is no proxy", async () => {
      const answer = await raw(app, { method: 'CONNECT', target: 'example.com:443' });
      expect([answer.status, answer.headers['content-type'], answer.headers['cache-control']]).toEqual([
        501,
        JSON_TYPE,
        'no-store',
      ]);
      expect((JSON.parse(answer.body) as any).errors[0].message).toMatch(/not a proxy/);
    });
  });

  describe('a browser opening /graphql (Accept: text/html, no query)', () => {
    const browser = 'Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n';
    if (mode === 'development') {
      it('GET gets the explorer; HEAD the same headers without a body', async () => {
        const get = await send({ method: 'GET', headers: browser });
        const head = await send({ method: 'HEAD', headers: browser });
        expect([get.status, get.headers['content-type']]).toEqual([200, 'text/html; charset=utf-8']);
        expect(get.body).toMatch(/graphiql/i);
        expect([head.status, head.headers['content-type'], head.headers['content-length'], head.body]).toEqual([
          200,
          'text/html; charset=utf-8',
          get.headers['content-length'],
          '',
        ]);
      });
    } else {
      it('GET gets a 400 saying the explorer is off and how to send queries, not the CSRF text; HEAD the same without a body', async () => {
        const get = await send({ method: 'GET', headers: browser });
        expectRefusal(
          get,
          400,
          /explorer page is turned off on this server.*POST.*application\/json.*query=.*Apollo-Require-Preflight/s,
        );
        const head = await send({ method: 'HEAD', headers: browser });
        expect([head.status, head.headers['content-type'], head.body]).toEqual([400, JSON_TYPE, '']);
      });
    }
  });

  // `curl http://127.0.0.1:4000/graphql`, the first thing many try, was told to set a Content-Type or an
  // Apollo-Require-Preflight header (Apollo's CSRF text, without a request id): neither is what was missing.
  describe('a client opening /graphql without a query (not a browser)', () => {
    const how =
      'This is the GraphQL API: send a query with POST (Content-Type: application/json, {"query": "{ __typename }"}), ' +
      'or with GET as ?query=... and an Apollo-Require-Preflight header.' +
      (mode === 'development' ? ' Open /graphql in a browser for the explorer.' : '');
    const exactly = new RegExp(`^${how.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
    it.each([
      ['no headers', '', '/graphql'],
      ['Accept: application/json', 'Accept: application/json\r\n', '/graphql'],
      ['Apollo-Require-Preflight', 'Apollo-Require-Preflight: true\r\n', '/graphql'],
      ['an empty ?query=', 'Content-Type: application/json\r\n', '/graphql?query='],
    ])('GET with %s: 400 saying how to send a query; HEAD the same without a body', async (_name, headers, target) => {
      expectRefusal(await send({ method: 'GET', headers, target }), 400, exactly);
      const head = await send({ method: 'HEAD', headers, target });
      expect([head.status, head.headers['content-type'], head.body]).toEqual([400, JSON_TYPE, '']);
    });
  });
});
