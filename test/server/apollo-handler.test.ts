import { request } from 'node:http';

import { createOrganization, type TestUser } from '../factories/organizations';
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
