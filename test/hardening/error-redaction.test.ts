import { generateSessionToken } from '../../src/access-keys/key-format';
import { createOrganization, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * graphql-js quotes what the client typed in its validation, coercion and parse errors (a field name, an enum
 * value, an operation name, a variable's value), and our own input errors quote an email: a key or a session
 * token typed there must not come back in `errors[].message`, which caches, proxies and browser tools keep.
 * The message still says what was wrong, with the credential as `[redacted]`.
 */
describe.each([
  ['explorer on (development)', 'true'],
  ['explorer off (production answers)', 'false'],
])('no credential echoed in an error message, %s', (_label, explorer) => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp({ env: { GRAPHQL_EXPLORER: explorer } });
    admin = await createOrganization(app, 'Redaction Clinic', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  /** POSTs `body` with the admin's key and returns the status and the raw response text. */
  async function post(body: Record<string, unknown>): Promise<{ status: number; text: string }> {
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-access-key': admin.key },
      body: JSON.stringify(body),
    });
    return { status: response.status, text: await response.text() };
  }

  /** Each case: what the secret is typed as, the request made with it, what the message must still say. */
  const cases: Array<[string, (secret: string) => Record<string, unknown>, RegExp]> = [
    ['a field name', (s) => ({ query: `{ me { ${s} } }` }), /Cannot query field "\[redacted\]" on type "User"/],
    ['an argument name', (s) => ({ query: `{ me(${s}: 1) { id } }` }), /Unknown argument "\[redacted\]"/],
    [
      'an operation name that is not in the document',
      (s) => ({ query: 'query Mine { me { id } }', operationName: s }),
      /Unknown operation named "\[redacted\]"/,
    ],
    [
      'an operation name in the document, with another one asked for',
      (s) => ({ query: `query ${s} { me { id } }`, operationName: 'Other' }),
      /Unknown operation named "Other": the document names "\[redacted\]"/,
    ],
    [
      'an enum value',
      (s) => ({ query: `{ users(filter: { role: ${s} }) { totalCount } }` }),
      /Value "\[redacted\]" does not exist in "Role" enum/,
    ],
    ['a fragment name', (s) => ({ query: `{ me { ...${s} } }` }), /Unknown fragment "\[redacted\]"/],
    [
      'a variable name',
      (s) => ({ query: `query ($${s}: Int) { me { id } }` }),
      /Variable "\$\[redacted\]" is never used/,
    ],
    ['a type name', (s) => ({ query: `query ($v: ${s}) { me { id } }` }), /Unknown type "\[redacted\]"/],
    ['a directive name', (s) => ({ query: `{ me @${s} { id } }` }), /Unknown directive "@\[redacted\]"/],
    ['a token the parser does not expect', (s) => ({ query: `{ me { id } } ${s}` }), /Syntax Error.*\[redacted\]/],
    [
      'the value of an enum variable',
      (s) => ({ query: 'query ($r: Role) { users(filter: { role: $r }) { totalCount } }', variables: { r: s } }),
      /Variable "\$r" got invalid value "\[redacted\]"/,
    ],
    [
      'the value of an Int variable',
      (s) => ({ query: 'query ($n: Int) { users(first: $n) { totalCount } }', variables: { n: s } }),
      /Int cannot represent non-integer value: "\[redacted\]"/,
    ],
    [
      'a string literal where an Int goes',
      (s) => ({ query: `{ users(first: "${s}") { totalCount } }` }),
      /Int cannot represent non-integer value: "\[redacted\]"/,
    ],
    [
      'an email refused by validation, as a literal',
      (s) => ({ query: `mutation { createUser(input: { email: "${s}", name: "Leaky" }) { id } }` }),
      /"\[redacted\]" is not a valid email address/,
    ],
    [
      'an email refused by validation, as a variable',
      (s) => ({
        query: 'mutation ($i: CreateUserInput!) { createUser(input: $i) { id } }',
        variables: { i: { email: `${s}@`, name: 'Leaky' } },
      }),
      /"\[redacted\]@" is not a valid email address/,
    ],
  ];

  it.each(cases)('typed as %s: the message says what was wrong, without the key', async (_what, request, says) => {
    const users = async () => (await app.dataSource.query('SELECT count(*)::int AS n FROM users'))[0].n as number;
    const before = await users();
    const { status, text } = await post(request(admin.key));
    expect(status).toBeGreaterThanOrEqual(200);
    // Not the key, nor part of its body, in any letter case (an email is quoted in its folded form).
    expect(text.toLowerCase()).not.toContain(admin.key.slice(4, 16).toLowerCase());
    expect(
      JSON.parse(text)
        .errors.map((error: { message: string }) => error.message)
        .join('\n'),
    ).toMatch(says);
    expect(await users()).toBe(before);
  });

  it.each(cases)('typed as %s: a session token is not echoed either', async (_what, request) => {
    const token = generateSessionToken();
    const { text } = await post(request(token));
    expect(text.toLowerCase()).not.toContain(token.slice(4, 16).toLowerCase());
    expect(text).toContain('[redacted]');
  });

  it('ordinary names are quoted as they were typed', async () => {
    const { text } = await post({ query: '{ me { cask_of_amontillado cakes } }' });
    const messages = JSON.parse(text).errors.map((error: { message: string }) => error.message);
    expect(messages).toEqual([expect.stringContaining('"cask_of_amontillado"'), expect.stringContaining('"cakes"')]);
    expect(text).not.toContain('[redacted]');
  });
});
