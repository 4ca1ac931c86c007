import { createOrganization, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** PostgreSQL text cannot hold U+0000, and names should not hold control characters: clear errors, no writes. */
describe('text input: NUL and control characters', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Text Clinic', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  const userCount = async () => (await app.dataSource.query('SELECT count(*)::int AS n FROM users'))[0].n as number;

  it.each([
    [
      'a search filter, as a variable',
      'query ($s: String) { users(filter: { search: $s }) { totalCount } }',
      { s: 'a\u0000' },
      true,
      'search',
    ],
    [
      'a new user name, as a literal',
      'mutation { createUser(input: { email: "z@a.test", name: "x\\u0000y" }) { id } }',
      undefined,
      true,
      'name',
    ],
    [
      'a new user email, nested in an input variable',
      'mutation ($i: CreateUserInput!) { createUser(input: $i) { id } }',
      { i: { email: 'z\u0000@a.test', name: 'Zed' } },
      true,
      'email',
    ],
    [
      'a sign-in email, without credentials',
      'mutation ($e: String!) { login(email: $e, password: "whatever it is") { token } }',
      { e: 'a\u0000@a.test' },
      false,
      'email',
    ],
  ])(
    'NUL in %s: 400 BAD_USER_INPUT on that field before anything runs',
    async (_label, query, variables, withKey, field) => {
      const before = await userCount();
      const response = await app.gql(query, { variables, key: withKey ? admin.key : undefined });
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field } }),
      ]);
      expect(response.body.errors![0].message).toMatch(/NUL character/);
      expect(await userCount()).toBe(before);
    },
  );

  it('a cursor carrying NUL is refused like any other forged cursor', async () => {
    const forged = Buffer.from(JSON.stringify(['\u0000', admin.id])).toString('base64url');
    const response = await app.gql('query ($c: String) { users(after: $c) { totalCount } }', {
      key: admin.key,
      variables: { c: forged },
    });
    expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
  });

  // A name with an unpaired surrogate went to PostgreSQL as U+FFFD: an empty page, not an error, though the same
  // text in a variable is refused; an array with more than the two entries a cursor holds was taken too.
  it.each<[string, unknown[]]>([
    ['an unpaired surrogate', ['\ud800', 'admin']],
    ['a third entry', ['A', 'admin', 3]],
  ])('a cursor carrying %s is refused like any other forged cursor', async (_label, entries) => {
    const forged = Buffer.from(JSON.stringify(entries.map((e) => (e === 'admin' ? admin.id : e)))).toString(
      'base64url',
    );
    const response = await app.gql('query ($c: String) { users(after: $c) { totalCount } }', {
      key: admin.key,
      variables: { c: forged },
    });
    expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
  });

  it('an organization name with a control character is refused (the CLI creates organizations)', async () => {
    const create = app.services.organizations.createWithAdmin({
      name: 'Tab\tOrg',
      adminEmail: 'tab-org@a.test',
      adminName: 'Tab Admin',
    });
    await expect(create).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'name' } });
    expect(await app.dataSource.query(`SELECT id FROM organizations WHERE name = $1`, ['Tab\tOrg'])).toEqual([]);
  });

  it.each([
    ['a tab in a name', { email: 'tab@a.test', name: 'Ta\tb' }, 'name'],
    ['a line break in a name', { email: 'nl@a.test', name: 'New\nLine' }, 'name'],
    ['a control character in an email', { email: 'bell\u0007@a.test', name: 'Bell' }, 'email'],
  ])('%s: BAD_USER_INPUT on that field, nothing created', async (_label, input, field) => {
    const before = await userCount();
    const response = await app.gql('mutation ($i: CreateUserInput!) { createUser(input: $i) { id } }', {
      key: admin.key,
      variables: { i: input },
    });
    expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    expect(await userCount()).toBe(before);
  });
});
