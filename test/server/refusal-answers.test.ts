import { writeFileSync } from 'node:fs';

import { Metrics } from '../../src/metrics';
import { createOrganization } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Bad /graphql requests, one per refusal the operation checks, the error-status listener and Apollo make (request
 * shape, query limits and cost, text input, null variables, persisted queries, parse and validation): each answer's
 * status, content type, Retry-After and body, pinned. Written to compare the synchronous hooks (c6fc908) with the
 * async ones before them (efbc970): with REFUSAL_ANSWERS_OUT set, the answers are also written there, so that
 * the same file run on both builds can be diffed byte for byte.
 */
const BAD: Array<{ name: string; method?: 'GET' | 'POST'; body?: string; query?: string }> = [
  { name: 'empty object', body: '{}' },
  { name: 'query not a string', body: JSON.stringify({ query: 42 }) },
  { name: 'variables not an object', body: JSON.stringify({ query: '{ me { id } }', variables: [1] }) },
  { name: 'batched', body: JSON.stringify([{ query: '{ me { id } }' }, { query: '{ me { id } }' }]) },
  { name: 'syntax error', body: JSON.stringify({ query: '{ me { id }' }) },
  { name: 'unknown field', body: JSON.stringify({ query: '{ me { nope } }' }) },
  { name: 'two operations, no name', body: JSON.stringify({ query: 'query a { me { id } } query b { me { id } }' }) },
  {
    name: 'unknown operationName',
    body: JSON.stringify({ query: 'query a { me { id } }', operationName: 'zzz' }),
  },
  { name: 'subscription', body: JSON.stringify({ query: 'subscription { me { id } }' }) },
  {
    name: 'persisted query extension',
    body: JSON.stringify({ extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } } }),
  },
  {
    name: 'persisted query extension with query',
    body: JSON.stringify({
      query: '{ me { id } }',
      extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } },
    }),
  },
  {
    name: 'too deep (MAX_QUERY_DEPTH 5)',
    body: JSON.stringify({ query: '{ auditEvents(first: 1) { edges { node { actor { organization { id } } } } } }' }),
  },
  {
    name: 'too many aliases',
    body: JSON.stringify({ query: `{ ${Array.from({ length: 300 }, (_, i) => `a${i}: me { id }`).join(' ')} }` }),
  },
  { name: 'page too large', body: JSON.stringify({ query: '{ users(first: 100000) { edges { node { id } } } }' }) },
  {
    name: 'cost too high',
    body: JSON.stringify({
      query: `{ ${Array.from({ length: 25 }, (_, i) => `a${i}: users(first: 500) { edges { node { id email accessKey } } }`).join(' ')} }`,
    }),
  },
  { name: 'too many tokens', body: JSON.stringify({ query: `{ me { ${'id '.repeat(20000)}} }` }) },
  {
    name: 'NUL in a variable',
    body: JSON.stringify({
      query: 'query ($q: String) { users(filter: { search: $q }, first: 1) { edges { node { id } } } }',
      variables: { q: 'a\u0000b' },
    }),
  },
  {
    name: 'very long text variable',
    body: JSON.stringify({
      query: 'query ($q: String) { users(filter: { search: $q }, first: 1) { edges { node { id } } } }',
      variables: { q: 'x'.repeat(100_000) },
    }),
  },
  {
    name: 'NUL in an inline argument',
    body: JSON.stringify({ query: '{ users(filter: { search: "a\\u0000b" }, first: 1) { edges { node { id } } } }' }),
  },
  {
    name: 'null for a non-null variable with a default',
    body: JSON.stringify({
      query: 'query ($n: Int! = 1) { users(first: $n) { edges { node { id } } } }',
      variables: { n: null },
    }),
  },
  { name: 'mutation over GET', method: 'GET', query: 'mutation { __typename }' },
  { name: 'GET without query', method: 'GET', query: '' },
];

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

describe('refusal answers', () => {
  let app: TestApp;
  let key: string;
  beforeAll(async () => {
    app = await startTestApp({
      captureLogs: true,
      env: { LOG_LEVEL: 'info', LOG_REQUESTS: 'true', MAX_QUERY_DEPTH: '5' },
    });
    key = (await createOrganization(app)).key;
  });
  afterAll(() => app.close());

  /** The log lines written since `from`, once the request's own line is there, without what differs run to run. */
  async function linesSince(from: number): Promise<unknown[]> {
    for (let i = 0; i < 200 && !app.logs.slice(from).some((line) => line.includes('request completed')); i++)
      await new Promise((resolve) => setTimeout(resolve, 5));
    return app.logs.slice(from).map((line) => {
      const { time, pid, hostname, durationMs, reqId, requestId, ...rest } = JSON.parse(line) as Record<
        string,
        unknown
      >;
      void [time, pid, hostname, durationMs, reqId, requestId];
      return JSON.parse(
        JSON.stringify(rest)
          .replace(UUID, '<uuid>')
          .replace(/"remotePort":\d+/g, '"remotePort":0'),
      );
    });
  }

  it('answers every bad request with the status, headers, body and log lines it answered before the synchronous hooks', async () => {
    const answers: Record<string, unknown> = {};
    for (const bad of BAD) {
      const from = app.logs.length;
      const url = bad.method === 'GET' ? `${app.url}?query=${encodeURIComponent(bad.query ?? '')}` : app.url;
      const response = await fetch(url, {
        method: bad.method ?? 'POST',
        headers: {
          'x-access-key': key,
          'apollo-require-preflight': 'true',
          ...(bad.method === 'GET' ? {} : { 'content-type': 'application/json' }),
        },
        body: bad.method === 'GET' ? undefined : bad.body,
      });
      answers[bad.name] = {
        status: response.status,
        contentType: response.headers.get('content-type'),
        retryAfter: response.headers.get('retry-after'),
        cacheControl: response.headers.get('cache-control'),
        // The app's own refusals carry the request id.
        body: (await response.text()).replace(UUID, '<uuid>'),
        logs: await linesSince(from),
      };
    }
    // An error thrown while the context is built (Metrics.track runs in the context function, on both builds).
    const from = app.logs.length;
    const track = jest.spyOn(Metrics.prototype, 'track').mockImplementationOnce(() => {
      throw new Error('context boom');
    });
    try {
      const response = await fetch(app.url, {
        method: 'POST',
        headers: { 'x-access-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ me { id } }' }),
      });
      answers['context throws'] = {
        status: response.status,
        contentType: response.headers.get('content-type'),
        body: (await response.text()).replace(
          /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g,
          '<uuid>',
        ),
        logs: await linesSince(from),
      };
    } finally {
      track.mockRestore();
    }
    if (process.env.REFUSAL_ANSWERS_OUT)
      writeFileSync(process.env.REFUSAL_ANSWERS_OUT, JSON.stringify(answers, null, 2));
    expect(answers).toMatchSnapshot();
  });
});
