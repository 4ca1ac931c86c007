import { writeFileSync } from 'node:fs';

import { createOrganization } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Bad /graphql requests, one per refusal the operation checks, the error-status listener and Apollo make (request
 * shape, query limits and cost, text input, null variables, persisted queries, parse and validation): each answer's
 * status, content type, Retry-After and body, pinned. Written to compare the synchronous hooks (c6fc908) with the
 * async ones before them (efbc970): with REFUSAL_ANSWERS_OUT set, the answers are also written there, so that
 * the same file run on both builds can be diffed byte for byte.
 */
const deep = (n: number): string => `{ me ${'{ organization '.repeat(n)}{ id }${' }'.repeat(n)} }`;
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
  { name: 'too deep', body: JSON.stringify({ query: deep(40) }) },
  {
    name: 'too many aliases',
    body: JSON.stringify({ query: `{ ${Array.from({ length: 300 }, (_, i) => `a${i}: me { id }`).join(' ')} }` }),
  },
  { name: 'page too large', body: JSON.stringify({ query: '{ users(first: 100000) { edges { node { id } } } }' }) },
  {
    name: 'cost too high',
    body: JSON.stringify({
      query: `{ ${Array.from({ length: 60 }, (_, i) => `a${i}: users(first: 100) { edges { node { id email accessKey } } }`).join(' ')} }`,
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

describe('refusal answers', () => {
  let app: TestApp;
  let key: string;
  beforeAll(async () => {
    app = await startTestApp();
    key = (await createOrganization(app)).key;
  });
  afterAll(() => app.close());

  it('answers every bad request with the status, headers and body it answered before the synchronous hooks', async () => {
    const answers: Record<string, unknown> = {};
    for (const bad of BAD) {
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
        body: await response.text(),
      };
    }
    if (process.env.REFUSAL_ANSWERS_OUT)
      writeFileSync(process.env.REFUSAL_ANSWERS_OUT, JSON.stringify(answers, null, 2));
    expect(answers).toMatchSnapshot();
  });
});
