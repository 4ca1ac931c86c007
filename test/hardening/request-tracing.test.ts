import { randomBytes } from 'node:crypto';

import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const PRODUCTION = { NODE_ENV: 'production', ACCESS_KEY_SECRET: randomBytes(32).toString('base64'), LOG_LEVEL: 'info' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ME = '{ me { id } }';

interface LogLine {
  msg: string;
  reqId?: string;
  [field: string]: unknown;
}

const parsed = (app: TestApp): LogLine[] => app.logs.map((line) => JSON.parse(line) as LogLine);

describe('request logs (LOG_REQUESTS) in production', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ env: { ...PRODUCTION, LOG_REQUESTS: 'true' }, captureLogs: true });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('writes one line per request with method, path, status and duration, and never a credential', async () => {
    const token = `cas_${'x'.repeat(38)}`;
    // Credentials in every place a client might put them: headers, and (never accepted) the query string.
    const response = await fetch(`${app.url}?access_key=${admin.key}&token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-access-key': admin.key, cookie: `session=${token}` },
      body: JSON.stringify({ query: ME }),
    });
    expect(response.status).toBe(200);
    await app.gql(ME, { headers: { authorization: `Bearer ${token}` } });
    const requestId = response.headers.get('x-request-id');
    const lines = parsed(app).filter((line) => line.msg === 'request completed');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      reqId: requestId,
      method: 'POST',
      path: '/graphql',
      statusCode: 200,
      client: '127.0.0.1',
    });
    expect(lines[0].durationMs).toEqual(expect.any(Number));
    expect(lines[1]).toMatchObject({ statusCode: 401, path: '/graphql' });
    const text = app.logs.join('\n');
    for (const secret of [admin.key, token, 'access_key=', 'cak_', 'cas_']) expect(text).not.toContain(secret);
  });
});

describe('request logs are off by default in production', () => {
  it('writes no line for a request that goes well', async () => {
    const app = await startTestApp({ env: PRODUCTION, captureLogs: true });
    try {
      expect((await app.gql('{ __typename }')).status).toBe(200);
      expect(parsed(app).filter((line) => line.msg === 'request completed')).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe.each([
  ['unset', {}, false],
  ['1 (one proxy)', { TRUST_PROXY: '1' }, true],
  ['a loopback address list', { TRUST_PROXY: 'loopback' }, true],
  ['an address list without this peer', { TRUST_PROXY: '10.0.0.0/8' }, false],
] as const)('X-Request-Id with TRUST_PROXY %s', (_label, env, kept) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { ...env, LOG_LEVEL: 'info', LOG_REQUESTS: 'true' }, captureLogs: true });
  });
  afterAll(() => app.close());

  const withRequestId = (id: string) => app.gql('{ __typename }', { headers: { 'x-request-id': id } });

  it(
    kept
      ? "keeps the proxy's id in the response and in every log line"
      : 'ignores it: a client cannot pick its request id',
    async () => {
      const proxyId = `nginx-${randomBytes(16).toString('hex')}`;
      const response = await withRequestId(proxyId);
      const id = response.headers.get('x-request-id')!;
      if (kept) expect(id).toBe(proxyId);
      else expect(id).toMatch(UUID);
      expect(
        parsed(app)
          .filter((line) => line.msg === 'request completed')
          .map((line) => line.reqId),
      ).toContain(id);
    },
  );

  it('replaces an id of the wrong shape or length with its own, so no client can shape log lines', async () => {
    for (const forged of ['a b', 'x"}{"level":60', 'a'.repeat(129), '-starts-with-dash', 'id\u00e9']) {
      const id = (await withRequestId(forged)).headers.get('x-request-id')!;
      expect(id).toMatch(UUID);
    }
  });
});

describe('X-Request-Id shaped like a credential, from a trusted proxy', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({
      env: { TRUST_PROXY: 'loopback', LOG_LEVEL: 'info', LOG_REQUESTS: 'true' },
      captureLogs: true,
    });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('is replaced with a new id: not sent back, not in the audit log, not in a log line', async () => {
    const shapes = [admin.key, `CAK_${admin.key.slice(4)}`, `request-${admin.key}`, `x_${admin.key}`];
    for (const forged of shapes) {
      const response = await app.gql('query ($id: ID!) { user(id: $id) { accessKey } }', {
        key: admin.key,
        variables: { id: admin.id },
        headers: { 'x-request-id': forged },
      });
      expect(response.body.data!.user.accessKey).toBe(admin.key);
      expect(response.headers.get('x-request-id')).toMatch(UUID);
    }
    const stored = await app.dataSource.query(`SELECT request_id FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED'`);
    expect(stored).toHaveLength(shapes.length);
    for (const { request_id } of stored) expect(request_id).toMatch(UUID);
    const audit = await app.gql(
      '{ auditEvents(filter: { action: ACCESS_KEY_VIEWED }) { edges { node { requestId } } } }',
      {
        key: admin.key,
      },
    );
    const ids = audit.body.data!.auditEvents.edges.map((edge: any) => edge.node.requestId);
    expect(ids).toHaveLength(shapes.length);
    for (const id of ids) expect(id).toMatch(UUID);
    expect(app.logs.join('\n')).not.toContain(admin.key.slice(4));
  });
});
