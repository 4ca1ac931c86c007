import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';

import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A body the service cannot read as it was meant: compressed (Content-Encoding), in another character set, or
 * bytes that are not UTF-8. Each is refused with a status and a message that say what to send, runs nothing
 * (no user is created from a half-read name), and writes no error-level log line.
 */
describe('request bodies: compressed, another charset, or not UTF-8', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ captureLogs: true, env: { LOG_LEVEL: 'info' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  /** createUser with this name, as raw bytes: Latin-1 bytes for "ü" are not UTF-8. */
  function createUserBody(params: { email: string; nameBytes: Buffer }): Buffer {
    return Buffer.concat([
      Buffer.from(
        `{"query":"mutation { createUser(input: { email: \\"${params.email}\\", role: MEMBER, name: \\"`,
        'utf8',
      ),
      params.nameBytes,
      Buffer.from('\\" }) { id name } }"}', 'utf8'),
    ]);
  }

  async function post(params: { body: Buffer; headers: Record<string, string> }) {
    const logsBefore = app.logs.length;
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'x-access-key': admin.key, ...params.headers },
      body: new Uint8Array(params.body),
    });
    const json = (await response.json()) as {
      data?: Record<string, any> | null;
      errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
    };
    const errorLines = app.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50);
    return { status: response.status, headers: response.headers, body: json, errorLines };
  }

  async function userExists(email: string): Promise<boolean> {
    const rows: unknown[] = await app.dataSource.query('SELECT 1 FROM users WHERE email = $1', [email]);
    return rows.length > 0;
  }

  it('refuses a body that is not UTF-8 (a Latin-1 "Müller") with 400, and creates no user', async () => {
    const email = 'latin1@body.example';
    const answer = await post({
      body: createUserBody({ email, nameBytes: Buffer.from('Müller', 'latin1') }),
      headers: { 'content-type': 'application/json' },
    });
    expect(answer.status).toBe(400);
    expect(answer.body.errors).toEqual([
      {
        message: 'The body is not valid UTF-8: send JSON encoded as UTF-8.',
        extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
      },
    ]);
    expect(answer.errorLines).toEqual([]);
    expect(await userExists(email)).toBe(false);
  });

  it.each([['iso-8859-1'], ['utf-16'], ['"windows-1252"']])(
    'refuses a body declared in charset=%s with 415, and creates no user',
    async (charset) => {
      const email = `charset-${randomUUID()}@body.example`;
      const answer = await post({
        body: createUserBody({ email, nameBytes: Buffer.from('Muller', 'latin1') }),
        headers: { 'content-type': `application/json; charset=${charset}` },
      });
      expect(answer.status).toBe(415);
      expect(answer.body.errors).toEqual([
        {
          message: `The body's charset must be UTF-8 (Content-Type: application/json; charset=utf-8), not ${charset.replace(/"/g, '')}.`,
          extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
        },
      ]);
      expect(answer.errorLines).toEqual([]);
      expect(await userExists(email)).toBe(false);
    },
  );

  it('names an empty charset as such', async () => {
    const answer = await post({
      body: Buffer.from('{"query":"{ __typename }"}'),
      headers: { 'content-type': 'application/json; charset=' },
    });
    expect(answer.status).toBe(415);
    expect(answer.body.errors![0].message).toBe(
      "The body's charset must be UTF-8 (Content-Type: application/json; charset=utf-8), not an empty charset.",
    );
  });

  it.each([
    ['a gzip body', 'gzip', (text: string) => gzipSync(text)],
    ['a plain body labelled gzip', 'gzip', (text: string) => Buffer.from(text)],
    ['a plain body labelled br', 'br', (text: string) => Buffer.from(text)],
    ['a plain body labelled gzip after identity', 'identity, gzip', (text: string) => Buffer.from(text)],
  ])('refuses %s with 415 and Accept-Encoding: identity, and creates no user', async (_label, encoding, encode) => {
    const email = `encoded-${randomUUID()}@body.example`;
    const answer = await post({
      body: encode(createUserBody({ email, nameBytes: Buffer.from('Pat') }).toString('utf8')),
      headers: { 'content-type': 'application/json', 'content-encoding': encoding },
    });
    expect(answer.status).toBe(415);
    expect(answer.headers.get('accept-encoding')).toBe('identity');
    expect(answer.body.errors).toEqual([
      {
        message: `Content-Encoding "${encoding}" is not supported: send the body uncompressed.`,
        extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
      },
    ]);
    expect(answer.errorLines).toEqual([]);
    expect(await userExists(email)).toBe(false);
  });

  it.each([
    ['charset=utf-8', { 'content-type': 'application/json; charset=utf-8' }],
    ['charset="UTF-8"', { 'content-type': 'application/json; charset="UTF-8"' }],
    ['charset=utf8', { 'content-type': 'application/json;charset=utf8' }],
    ['Content-Encoding: identity', { 'content-type': 'application/json', 'content-encoding': 'identity' }],
    // RFC 9110 5.6.1.2: a recipient must accept empty list elements; an empty list is no coding at all.
    ['Content-Encoding: identity,', { 'content-type': 'application/json', 'content-encoding': 'identity,' }],
    ['an empty Content-Encoding', { 'content-type': 'application/json', 'content-encoding': '' }],
  ])('still reads UTF-8 JSON sent with %s', async (_label, headers) => {
    const email = `ok-${randomUUID()}@body.example`;
    const answer = await post({ body: createUserBody({ email, nameBytes: Buffer.from('Müller', 'utf8') }), headers });
    expect(answer.status).toBe(200);
    expect(answer.body.data!.createUser.name).toBe('Müller');
  });

  it.each([
    ['"__proto__" in the body', '{"query":"{ __typename }","__proto__":{"x":1}}'],
    ['"__proto__" in the variables', '{"query":"{ __typename }","variables":{"__proto__":{"x":1}}}'],
    [
      '"constructor": { "prototype" } in the variables',
      '{"query":"{ __typename }","variables":{"constructor":{"prototype":{}}}}',
    ],
  ])('refuses valid JSON with %s as what it is, not as "not valid JSON"', async (_label, text) => {
    const answer = await post({ body: Buffer.from(text), headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    expect(answer.body.errors).toEqual([
      {
        message: 'The body may not hold a "__proto__" key or a "constructor" key with "prototype" in it.',
        extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
      },
    ]);
    expect(answer.errorLines).toEqual([]);
  });

  it('still calls a body that is not JSON "not valid JSON"', async () => {
    const answer = await post({ body: Buffer.from('{"query":'), headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    expect(answer.body.errors![0].message).toBe("Body is not valid JSON but content-type is set to 'application/json'");
  });

  it('says what to send for a content type that is not JSON', async () => {
    const answer = await post({
      body: Buffer.from('{ me { id } }'),
      headers: { 'content-type': 'application/graphql' },
    });
    expect(answer.status).toBe(415);
    expect(answer.body.errors).toEqual([
      {
        message: 'Send the request body as JSON (Content-Type: application/json), not application/graphql.',
        extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
      },
    ]);
  });
});
