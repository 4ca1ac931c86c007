import { connect } from 'node:net';

import { ACCESS_KEY_PREFIX, generateAccessKey } from '../../src/access-keys/key-format';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const ME = '{ me { id email role } }';

/** Replaces the character at `index` with another base62 character. */
function changeOneCharacter(key: string, index: number): string {
  const replacement = key[index] === 'A' ? 'B' : 'A';
  return key.slice(0, index) + replacement + key.slice(index + 1);
}

/**
 * A POST of ME with these header lines as written (HTTP lets a header repeat; fetch would join the values), from
 * 127.0.0.3: another client address, so its refusals leave the other tests' failure count alone.
 */
function postWithHeaderLines(app: TestApp, lines: string[]): Promise<{ status: number; body: any }> {
  const { port } = new URL(app.url);
  const body = JSON.stringify({ query: ME });
  const request =
    `POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n${lines.map((line) => `${line}\r\n`).join('')}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  return new Promise((resolve, reject) => {
    const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress: '127.0.0.3' }, () =>
      socket.write(request),
    );
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('end', () => {
      const [head, text = ''] = answer.split('\r\n\r\n', 2);
      resolve({ status: Number(head.split(' ')[1]), body: JSON.parse(text) });
    });
    socket.on('error', reject);
  });
}

describe('authentication with an access key', () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app);
    member = await createUser(app, admin, { role: Role.MEMBER });
  });
  afterAll(() => app.close());

  it('accepts the key in X-Access-Key and as a Bearer token', async () => {
    const viaHeader = await app.gql(ME, { key: member.key });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.body.data!.me).toEqual({ id: member.id, email: member.email, role: 'MEMBER' });

    const viaBearer = await app.gql(ME, { headers: { authorization: `Bearer ${member.key}` } });
    expect(viaBearer.body.data!.me.id).toBe(member.id);
  });

  it.each([
    ['spaces', `  ${'KEY'}  `],
    ['tabs', `\t${'KEY'}\t`],
    ['a space before, a tab after', ` ${'KEY'}\t`],
  ])('trims pasted whitespace around the key (%s)', async (_label, template) => {
    const response = await app.gql(ME, { key: template.replace('KEY', member.key) });
    expect(response.status).toBe(200);
    expect(response.body.data!.me.id).toBe(member.id);
  });

  it('trims a newline pasted into a Bearer token', async () => {
    const response = await app.gql(ME, { headers: { authorization: `Bearer  ${member.key}  ` } });
    expect(response.body.data!.me.id).toBe(member.id);
  });

  it.each([
    [
      'a non-breaking space (pasted from a web page) around the key in X-Access-Key',
      (key: string) => ({ 'x-access-key': `\u00a0${key}\u00a0` }),
    ],
    [
      'non-breaking spaces around a Bearer key',
      (key: string) => ({ authorization: `Bearer \u00a0${key}\u00a0\u00a0` }),
    ],
  ])('trims whitespace that reaches the server: %s', async (_label, headers) => {
    // HTTP itself strips spaces and tabs around a header value; these characters arrive and must be trimmed here.
    const response = await app.gql(ME, { headers: headers(member.key) });
    expect(response.status).toBe(200);
    expect(response.body.data!.me.id).toBe(member.id);
  });

  it.each(['Token', 'Basic', 'Bearer:', 'Key'])(
    'refuses a valid key under the Authorization scheme "%s" as malformed',
    async (scheme) => {
      const response = await app.gql(ME, { headers: { authorization: `${scheme} ${member.key}` } });
      expect(response.status).toBe(401);
      expect(response.body.errors![0].extensions).toEqual({ code: 'UNAUTHENTICATED', reason: 'MALFORMED_CREDENTIALS' });
    },
  );

  describe('refuses a malformed key from its shape and checksum alone, with no SQL', () => {
    const cases: Array<[string, (key: string) => string]> = [
      ['one character changed in the random part', (key) => changeOneCharacter(key, 10)],
      ['one character changed in the checksum', (key) => changeOneCharacter(key, key.length - 1)],
      ['truncated by one character', (key) => key.slice(0, -1)],
      ['truncated to half', (key) => key.slice(0, 20)],
      ['a space inside', (key) => `${key.slice(0, 15)} ${key.slice(15)}`],
      ['a tab inside', (key) => `${key.slice(0, 15)}\t${key.slice(15)}`],
      ['one character added', (key) => `${key}x`],
      ['the wrong prefix', (key) => `cak-${key.slice(ACCESS_KEY_PREFIX.length)}`],
      ['empty', () => ''],
    ];
    it.each(cases)('%s', async (_label, mutate) => {
      // Notes of use of earlier tests' keys are written a second later, in the background: written now, so that
      // none lands in the window below (one did, on a slow run).
      await app.services.accessKeys.flushUse();
      const before = app.queries.count;
      const response = await app.gql(ME, { key: mutate(member.key) });
      // The only statement it may cause is the failed-authentication counter, written in the background.
      await app.services.rateLimiter.flush();
      expect(app.queries.since(before).filter((sql) => !sql.includes('auth_failures'))).toEqual([]);
      expect(response.status).toBe(401);
      expect(response.body).toEqual({
        errors: [
          {
            message: expect.stringMatching(/malformed.*check that no characters were lost or added when copying/i),
            extensions: { code: 'UNAUTHENTICATED', reason: 'MALFORMED_CREDENTIALS' },
          },
        ],
      });
    });
  });

  it('answers INVALID_CREDENTIALS for a well-formed key nobody has', async () => {
    const response = await app.gql(ME, { key: generateAccessKey() });
    expect(response.status).toBe(401);
    expect(response.body.errors).toEqual([
      expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' } }),
    ]);
    expect(response.body.data).toBeUndefined();
  });

  it('refuses a key of a deactivated user at once, and accepts it again after reactivation', async () => {
    const user = await createUser(app, admin);
    const deactivate = await app.gql(`mutation ($id: ID!) { deactivateUser(id: $id) { isActive } }`, {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(deactivate.body.data!.deactivateUser.isActive).toBe(false);
    const refused = await app.gql(ME, { key: user.key });
    expect(refused.status).toBe(401);
    expect(refused.body.errors![0].extensions!.reason).toBe('INVALID_CREDENTIALS');

    await app.gql(`mutation ($id: ID!) { reactivateUser(id: $id) { isActive } }`, {
      key: admin.key,
      variables: { id: user.id },
    });
    const accepted = await app.gql(ME, { key: user.key });
    expect(accepted.body.data!.me.id).toBe(user.id);
  });

  it('refuses every key of a deactivated organization', async () => {
    const other = await createOrganization(app, 'Closing Down Inc');
    await app.dataSource.query(`UPDATE organizations SET is_active = false WHERE id = $1`, [other.organizationId]);
    const response = await app.gql(ME, { key: other.key });
    expect(response.status).toBe(401);
    expect(response.body.errors![0].extensions!.reason).toBe('INVALID_CREDENTIALS');
  });

  it('never reads a key from the query string', async () => {
    const response = await fetch(
      `${app.url}?query=${encodeURIComponent(ME)}&access_key=${member.key}&key=${member.key}`,
      {
        headers: { 'apollo-require-preflight': 'true' },
      },
    );
    const body = (await response.json()) as { errors: Array<{ extensions: { code: string } }> };
    expect(body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('refuses two credentials at once, and an Authorization scheme other than Bearer', async () => {
    const both = await app.gql(ME, { key: member.key, headers: { authorization: `Bearer ${member.key}` } });
    expect(both.status).toBe(401);
    expect(both.body.errors![0].extensions!.reason).toBe('MALFORMED_CREDENTIALS');
    const basic = await app.gql(ME, { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
    expect(basic.status).toBe(401);
    expect(basic.body.errors![0].extensions!.reason).toBe('MALFORMED_CREDENTIALS');
  });

  describe('when a credential header is repeated', () => {
    // Node joins repeated X-Access-Key lines with ", " and keeps only the first Authorization line: a proxy
    // that reads the last one would see another caller than the service does.
    it.each([
      [
        'X-Access-Key twice, the same key',
        (key: string, _other: string) => [`X-Access-Key: ${key}`, `X-Access-Key: ${key}`],
        'Send X-Access-Key once.',
      ],
      [
        'Authorization twice, the same key',
        (key: string, _other: string) => [`Authorization: Bearer ${key}`, `Authorization: Bearer ${key}`],
        'Send Authorization once.',
      ],
      [
        'Authorization twice, another key second',
        (key: string, other: string) => [`Authorization: Bearer ${key}`, `Authorization: Bearer ${other}`],
        'Send Authorization once.',
      ],
      [
        'authorization in two letter cases',
        (key: string, other: string) => [`Authorization: Bearer ${key}`, `authorization: Bearer ${other}`],
        'Send Authorization once.',
      ],
    ])('refuses it, saying so: %s', async (_label, lines, message) => {
      const response = await postWithHeaderLines(app, lines(member.key, admin.key));
      expect(response.status).toBe(401);
      expect(response.body.errors).toEqual([
        { message, extensions: { code: 'UNAUTHENTICATED', reason: 'MALFORMED_CREDENTIALS' } },
      ]);
    });

    it('still accepts one of each other header next to the credential', async () => {
      const response = await postWithHeaderLines(app, [`X-Access-Key: ${member.key}`, 'X-Other: 1', 'X-Other: 2']);
      expect(response).toEqual({
        status: 200,
        body: { data: { me: { id: member.id, email: member.email, role: 'MEMBER' } } },
      });
    });
  });

  it('lets a request without credentials run only __typename (and introspection where the explorer is on)', async () => {
    const typename = await app.gql('{ __typename }');
    expect(typename.body).toEqual({ data: { __typename: 'Query' } });
    const introspection = await app.gql('{ __schema { queryType { name } } }');
    expect(introspection.body.data!.__schema.queryType.name).toBe('Query');

    const me = await app.gql('{ __typename me { id } }');
    expect(me.status).toBe(200);
    expect(me.body.errors).toEqual([
      expect.objectContaining({ path: ['me'], extensions: { code: 'UNAUTHENTICATED' } }),
    ]);
  });
});
