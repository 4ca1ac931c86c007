import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import path from 'node:path';

import { generateAccessKey } from '../src/access-keys/key-format';
import { createLogger } from '../src/logger';
import { Metrics } from '../src/metrics';
import { handleUnhandledRejections } from '../src/unhandled-rejections';
import { type BuiltServer, spawnBuiltServer } from './helpers/processes';
import { parseSamples } from './helpers/prometheus';
import { createTestDatabase } from './helpers/test-app';
import { until } from './helpers/until';

/** Rejects a promise, with nothing to handle it, each time the process gets SIGUSR2. */
const PRELOAD = path.join(__dirname, 'fixtures', 'reject-on-sigusr2.js');

/** pino's error level: the lines an operator is paged for. */
const ERROR_LEVEL = 50;

interface LogLine {
  level: number;
  msg: string;
  err?: Record<string, unknown>;
  [field: string]: unknown;
}

describe('a promise rejection that nothing handles, in the server process', () => {
  let database: { url: string; drop(): Promise<void> };
  let server: BuiltServer;
  let graphqlUrl: string;
  let metricsUrl: string;

  const logLines = () =>
    server.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  const errorLines = () => logLines().filter((line) => line.level >= ERROR_LEVEL);
  const scrape = async () => parseSamples(await (await fetch(metricsUrl)).text());

  beforeAll(async () => {
    database = await createTestDatabase();
    server = spawnBuiltServer(
      {
        NODE_ENV: 'production',
        DATABASE_URL: database.url,
        ACCESS_KEY_SECRET: randomBytes(32).toString('base64'),
        METRICS_PORT: '0',
      },
      { nodeArgs: ['--require', PRELOAD] },
    );
    const addresses = await server.listening;
    graphqlUrl = addresses.graphqlUrl;
    metricsUrl = addresses.metricsUrl!;
  });
  afterAll(async () => {
    await server.stop();
    await database.drop();
  });

  it('is logged once at error level (message and stack only), counted, and the process keeps serving', async () => {
    expect((await scrape()).get('crm_access_unhandled_rejections_total')).toBe(0);
    expect(errorLines()).toEqual([]);

    server.child.kill('SIGUSR2');
    await until(() => errorLines().length > 0 || !server.isAlive());
    const { exitCode, signalCode } = server.child;
    expect({ exitCode, signalCode, stderr: server.stderr }).toEqual({ exitCode: null, signalCode: null, stderr: '' });

    const response = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect({ status: response.status, body: await response.json() }).toEqual({
      status: 200,
      body: { data: { __typename: 'Query' } },
    });
    expect((await scrape()).get('crm_access_unhandled_rejections_total')).toBe(1);

    // Read after the request and the scrape, so a second line for the same rejection would be here by now.
    const errors = errorLines();
    expect(errors).toHaveLength(1);
    const [line] = errors;
    expect(line.level).toBe(ERROR_LEVEL);
    expect(line.err).toEqual({
      type: 'Error',
      message: 'test orphan',
      stack: expect.stringMatching(/^Error: test orphan\n\s+at /),
    });
    expect(line).not.toHaveProperty('req');
    expect(server.stdout).not.toContain('orphanRequestData');
    expect(server.isAlive()).toBe(true);
  });
});

describe('what an unhandled rejection leaves in the log', () => {
  /** Emits one 'unhandledRejection' with `reason`; resolves to the lines logged and the counter's value. */
  async function rejectWith(reason: unknown): Promise<{ lines: LogLine[]; counted: number | undefined }> {
    const emitter = new EventEmitter();
    const written: string[] = [];
    const logger = createLogger({ level: 'info', destination: { write: (line: string) => void written.push(line) } });
    const metrics = new Metrics();
    const remove = handleUnhandledRejections({ logger, metrics, process: emitter });
    emitter.emit('unhandledRejection', reason, Promise.resolve());
    remove();
    expect(emitter.listenerCount('unhandledRejection')).toBe(0);
    const samples = parseSamples(await metrics.registry.metrics());
    return {
      lines: written.map((line) => JSON.parse(line) as LogLine),
      counted: samples.get('crm_access_unhandled_rejections_total'),
    };
  }

  it('a reason that is not an Error: its type only, never its value', async () => {
    const { lines, counted } = await rejectWith({ query: '{ orphanRequestData }' });
    expect(counted).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0].level).toBe(ERROR_LEVEL);
    expect(lines[0].err).toEqual({ type: 'object', message: expect.stringMatching(/not an Error/) });
    expect(JSON.stringify(lines)).not.toContain('orphanRequestData');
  });

  it('an Error of a subclass: its class, with a key in its message redacted from message and stack', async () => {
    class ResolverFailure extends Error {}
    const key = generateAccessKey();
    const { lines } = await rejectWith(new ResolverFailure(`no row for ${key}`));
    expect(lines).toHaveLength(1);
    expect(lines[0].err).toMatchObject({ type: 'ResolverFailure', message: expect.stringMatching(/^no row for /) });
    expect(JSON.stringify(lines)).not.toContain(key);
  });
});
