import net from 'node:net';

import { startTestApp, type TestApp } from '../helpers/test-app';
import { until } from '../helpers/until';

/**
 * A client that hangs up in the middle of its request body is the client's doing: it is not a database outage
 * (no outage opened, no error-level line), and the service goes on as before.
 */
describe('a client aborting mid-request', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info', LOG_REQUESTS: 'true' } });
  });
  afterAll(() => app.close());

  it("is logged as the client's, opens no database outage and writes no error-level line", async () => {
    const { port } = new URL(app.url);
    const before = app.logs.length;
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(Number(port), '127.0.0.1', () => {
          socket.write(
            'POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"query":',
          );
          // Hang up once the server has started reading the body.
          setImmediate(() => socket.destroy());
        });
        socket.on('close', () => resolve());
        socket.on('error', () => undefined);
      });
    }
    // Each aborted request is seen handled before the verdict is read: three lines of the client's, or an error line.
    const lines = () => app.logs.slice(before).map((line) => JSON.parse(line) as { level: number; msg: string });
    await until(
      () =>
        lines().filter((line) => line.msg.includes('client closed')).length >= 3 ||
        lines().some((line) => line.level >= 50),
    );
    expect(app.services.outage.ongoing).toBe(false);
    expect(lines().filter((line) => line.level >= 50)).toEqual([]);
    expect((await app.gql('{ __typename }')).status).toBe(200);
  });
});
