import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const DEACTIVATE = 'mutation ($id: ID!) { deactivateUser(id: $id) { isActive } }';
const LOGOUT = 'mutation { logout }';
const READ =
  '{ users(first: 50) { edges { node { email role } } } auditEvents(first: 5) { edges { node { action } } } }';

/**
 * A request is judged when it has arrived whole, not at its headers: a client that sends the headers and holds
 * the body back chooses when the request runs (REQUEST_TIMEOUT_MS later at most), so a credential judged at the
 * headers would still read after a deactivation or sign-out that committed meanwhile. Found by an adversarial
 * review (helper-80): the request answered the organization's users and audit log after the deactivation.
 *
 * The window is held open by the test itself: the body is sent only once the ending's answer (its commit) is in.
 * The credential is cached first, so that judging it at the headers (the old way) is done, without a database
 * round trip, by the time the server emits 'request' for them.
 */
describe('a request whose body arrives after its credential ended', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Held Body Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  /**
   * Sends the headers of a POST of `query` with `headers`, waits until the server has them, runs `end`, then
   * sends the body; resolves with the status and the parsed answer.
   */
  async function holdBodyAcross(params: { headers: Record<string, string>; end: () => Promise<void> }): Promise<{
    status: number;
    body: { data?: Record<string, unknown> | null; errors?: Array<{ extensions?: { code?: string } }> };
  }> {
    const url = new URL(app.url);
    const body = JSON.stringify({ query: READ });
    const marker = `held-${randomUUID()}`;
    const headersIn = new Promise<void>((resolve) => {
      const onRequest = (request: IncomingMessage) => {
        if (request.headers['x-request-id'] !== marker) return;
        app.app.server.off('request', onRequest);
        resolve();
      };
      app.app.server.on('request', onRequest);
    });
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const extra = Object.entries(params.headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nX-Request-Id: ${marker}\r\n` +
        `${extra}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`,
    );
    await headersIn;
    await params.end();
    socket.write(body);
    await closed;
    const [head, payload] = answer.split('\r\n\r\n');
    return { status: Number(head.split(' ')[1]), body: JSON.parse(payload) };
  }

  it('a key whose user was deactivated meanwhile: 401, nothing read', async () => {
    const person = await createUser(app, admin, { role: Role.ADMIN });
    expect((await app.gql('{ me { id } }', { key: person.key })).status).toBe(200);
    const answer = await holdBodyAcross({
      headers: { 'X-Access-Key': person.key },
      end: async () => {
        const deactivated = await app.gql(DEACTIVATE, { key: admin.key, variables: { id: person.id } });
        expect(deactivated.body.data).toEqual({ deactivateUser: { isActive: false } });
      },
    });
    expect(answer).toEqual({
      status: 401,
      body: { errors: [expect.objectContaining({ extensions: expect.objectContaining({ code: 'UNAUTHENTICATED' }) })] },
    });
  });

  it('a session signed out meanwhile: 401, nothing read', async () => {
    const token = await login(app, admin);
    const bearer = { authorization: `Bearer ${token}` };
    expect((await app.gql('{ me { id } }', { headers: bearer })).status).toBe(200);
    const answer = await holdBodyAcross({
      headers: bearer,
      end: async () => {
        expect((await app.gql(LOGOUT, { headers: bearer })).body.data).toEqual({ logout: true });
      },
    });
    expect(answer.status).toBe(401);
    expect(answer.body.data ?? null).toBeNull();
  });
});
