import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';

import { Client } from 'pg';

import { createOrganization, type TestUser } from '../factories/organizations';
import { waitForBlockedStatement } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * closeStalledResponses (http-hardening.ts) gives a connection an inactivity timeout of REQUEST_TIMEOUT_MS once
 * an answer is about to be written, so a client that never reads its answer loses its connection. It must not
 * cut a client that does read: one reading a large answer slowly but steadily, or one whose next request
 * (pipelined, HTTP/1.1) is still being handled, waiting for the database, when the previous answer went out.
 */
describe('the stalled-answer timeout and clients that are not stalled', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { REQUEST_TIMEOUT_MS: '1000', HEADERS_TIMEOUT_MS: '500' } });
    admin = await createOrganization(app, 'Stalled Answers Clinic');
  });
  afterAll(() => app.close());

  const port = () => Number(new URL(app.url).port);

  // The second request of a pipelined pair waits for a row lock (as a request may, up to DB_STATEMENT_TIMEOUT_MS,
  // which may exceed REQUEST_TIMEOUT_MS). The first answer's onSend set the socket's timeout, and Node clears a
  // socket timeout only when a request arrives after the keep-alive timeout was set: the second request arrived
  // before, so the timeout stayed and closed the connection under a request still being handled.
  it('does not close a connection whose next request is still being handled when the previous answer goes out', async () => {
    const blocker = new Client({ connectionString: app.databaseUrl });
    await blocker.connect();
    const socket = net.connect(port(), '127.0.0.1');
    const connected = new Promise((resolve) => socket.once('connect', resolve));
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, [admin.id]);
      const [{ pid }] = (await blocker.query('SELECT pg_backend_pid() AS pid')).rows;

      let received = '';
      let closedAt: number | null = null;
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => (received += chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => (closedAt = Date.now()));
      await connected;
      const first = '{"query":"{ __typename }"}';
      const second = JSON.stringify({
        query: 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Pipelined Rename" }) { name } }',
        variables: { id: admin.id },
      });
      const post = (body: string, key?: string) =>
        `POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        (key ? `X-Access-Key: ${key}\r\n` : '') +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      socket.write(post(first) + post(second, admin.key));

      // The second request waits for the row lock; the first one's answer has gone out.
      await waitForBlockedStatement(app, { by: pid });
      expect(received).toContain('{"data":{"__typename":"Query"}}');
      // Well past REQUEST_TIMEOUT_MS while the request is handled; the client has read all it was sent.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(closedAt).toBeNull();

      await blocker.query('COMMIT');
      const deadline = Date.now() + 10_000;
      while (!received.includes('Pipelined Rename') && closedAt === null && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(received).toContain('{"data":{"updateUser":{"name":"Pipelined Rename"}}}');
    } finally {
      socket.destroy();
      await blocker.query('ROLLBACK').catch(() => undefined);
      await blocker.end();
    }
  });
  // A client on a slow link reads the explorer's 3.5 MB script for longer than REQUEST_TIMEOUT_MS, but steadily.
  // Over loopback the kernel would take the whole file at once; a receive buffer of 4 KiB (SO_RCVBUF, which
  // Node's sockets cannot set: so a Python client) makes the server wait on the client as a slow link would. At
  // most 8 KiB a read and 4 ms between reads, the one write of the answer lasts well past the timeout (1 s).
  // Node suppresses a socket's timeout while a write is making progress (net.Socket's _onTimeout compares the
  // size of the write queue with its last), so this client is not cut: the guard is that closeStalledResponses
  // keeps to the socket's own timeout, and does not time answers by a clock of its own.
  it('does not cut a client that reads a large file slowly but steadily, for longer than the timeout', async () => {
    const client = `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /explorer-assets/graphiql.min.js HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
received = b""
while True:
    chunk = s.recv(8192)
    if not chunk:
        break
    received += chunk
    time.sleep(0.004)
head, _, body = received.partition(b"\\r\\n\\r\\n")
length = [l for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length:")]
print(int(length[0].split(b":")[1]) if length else -1, len(body))
`;
    const started = Date.now();
    const { stdout } = await promisify(execFile)('python3', ['-c', client, String(port())], { timeout: 60_000 });
    const [declared, received] = stdout.trim().split(' ').map(Number);
    expect(Date.now() - started).toBeGreaterThan(1_000);
    expect(declared).toBeGreaterThan(3_000_000);
    expect(received).toBe(declared);
  });
});
