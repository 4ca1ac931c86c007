import { randomUUID } from 'node:crypto';

import { createOrganization, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Input that looks the same but is not: emails are compared in one normal form (NFKC, lower case), invisible
 * and bidirectional-control characters are refused in emails and names, a name must show something, and no
 * text input may carry an unpaired surrogate (PostgreSQL would store U+FFFD while the answer echoed the input).
 */
describe('look-alike input', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Look-alike Clinic', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  const CREATE = 'mutation ($i: CreateUserInput!) { createUser(input: $i) { id email name } }';
  const UPDATE = 'mutation ($id: ID!, $e: String!) { updateUser(id: $id, input: { email: $e }) { email } }';
  const LOGIN = 'mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { user { id } } }';
  const userCount = async () => (await app.dataSource.query('SELECT count(*)::int AS n FROM users'))[0].n as number;
  const local = () => `u${randomUUID().slice(0, 8)}`;
  const create = (input: Record<string, unknown>) =>
    app.gql(CREATE, { key: admin.key, variables: { i: { name: 'Some One', ...input } } });

  describe('emails in one normal form', () => {
    it.each<[string, (base: string) => [string, string]]>([
      [
        'precomposed é against e + combining accent',
        (base) => [`${base}-jos\u00e9@example.test`, `${base}-jose\u0301@example.test`],
      ],
      ['letter case outside ASCII', (base) => [`${base}-\u00e9mile@example.test`, `${base}-\u00c9MILE@EXAMPLE.TEST`]],
      ['fullwidth letters (NFKC)', (base) => [`${base}ada@example.test`, `${base}\uff41\uff44\uff41@example.test`]],
      ['a ligature (NFKC)', (base) => [`${base}-office@example.test`, `${base}-o\ufb03ce@example.test`]],
      [
        'Greek final sigma against sigma (case folding)',
        (base) => [`\u03bf\u03b4\u03bf\u03c2@${base}.example.test`, `\u03bf\u03b4\u03bf\u03c3@${base}.example.test`],
      ],
      [
        'Greek capital sigma at the end',
        (base) => [`\u03bf\u03b4\u03bf\u03c3@${base}.example.test`, `\u039f\u0394\u039f\u03a3@${base}.example.test`],
      ],
      [
        'a punycode domain against its Unicode form',
        (base) => [`${base}@b\u00fccher.example`, `${base}@xn--bcher-kva.example`],
      ],
      [
        'a Unicode domain against its punycode form',
        (base) => [`${base}@xn--bcher-kva.example`, `${base}@B\u00fcCHER.example`],
      ],
      // The decoded A-label is folded as typed text is: it was only NFKC'd, so updateUser stored a final sigma
      // (or a capital letter) that sign-in with the typed form never found, next to the folded twin.
      [
        'a punycode domain decoding to a Greek final sigma, against sigma',
        (base) => [`${base}@\u03bf\u03b4\u03bf\u03c3.example`, `${base}@xn--pxavbm.example`],
      ],
      [
        'a punycode domain decoding to a capital letter (Cherokee), against its lower case',
        (base) => [`${base}@\uab70.example`, `${base}@xn--58d.example`],
      ],
      // IDNA's label separators (UTS 46): the ideographic full stop, and its halfwidth form (NFKC makes it one).
      ['an ideographic full stop against a dot', (base) => [`${base}@x.y.example`, `${base}@x\u3002y.example`]],
      [
        'a halfwidth ideographic full stop against a dot',
        (base) => [`${base}@x.y.example`, `${base}@x\uff61y.example`],
      ],
      // UTS 46 maps a domain further than NFKC and lower case do: the DNS name of these pairs is one (ToASCII).
      [
        'a Greek letter with ypogegrammeni against alpha and iota (xn--mxaq)',
        (base) => [`${base}@\u03b1\u03b9.example`, `${base}@\u1fb3.example`],
      ],
      [
        'an old Cyrillic letter form (rounded ve) against its letter',
        (base) => [`${base}@\u0432.example`, `${base}@\u1c80.example`],
      ],
      // UTS 46 maps the capital sharp s to ß since version 15.1 (to ss before, as node:url did in Node 20 and 22,
      // so that the same address was stored in two forms on two Node versions): one form on every Node.
      [
        'a capital sharp s against the sharp s (UTS 46 15.1)',
        (base) => [`${base}@stra\u00dfe.example`, `${base}@STRA\u1e9eE.example`],
      ],
    ])('%s: the second is a CONFLICT, in any organization, and signs in as the first', async (_label, pair) => {
      const [first, second] = pair(local());
      const created = await create({ email: first, password: TEST_PASSWORD });
      expect(created.body.errors).toBeUndefined();
      const other = await createOrganization(app, 'Other Clinic');
      const before = await userCount();
      const duplicate = await app.gql(CREATE, { key: other.key, variables: { i: { email: second, name: 'Twin' } } });
      expect(duplicate.body.errors![0].extensions!.code).toBe('CONFLICT');
      const update = await app.gql(UPDATE, { key: other.key, variables: { id: other.id, e: second } });
      expect(update.body.errors![0].extensions!.code).toBe('CONFLICT');
      expect(await userCount()).toBe(before);
      const login = await app.gql(LOGIN, { variables: { e: second, p: TEST_PASSWORD } });
      expect(login.body.data?.login.user.id).toBe(created.body.data!.createUser.id);
    });

    it('stores and answers the normal form, and signs in with any of its look-alikes', async () => {
      const base = local();
      const created = await create({ email: `${base}-Jose\u0301@Example.TEST`, password: TEST_PASSWORD });
      const normal = `${base}-jos\u00e9@example.test`;
      expect(created.body.data!.createUser.email).toBe(normal);
      const [row] = await app.dataSource.query('SELECT email FROM users WHERE id = $1', [
        created.body.data!.createUser.id,
      ]);
      expect(row.email).toBe(normal);
      const login = await app.gql(
        'mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { user { id } } }',
        {
          variables: { e: ` ${base}-JOSE\u0301@example.test `, p: TEST_PASSWORD },
        },
      );
      expect(login.body.data!.login.user.id).toBe(created.body.data!.createUser.id);
    });

    it('updateUser to a look-alike of another user is a CONFLICT', async () => {
      const base = local();
      await create({ email: `${base}-ren\u00e9@example.test` });
      const mine = await create({ email: `${base}-mine@example.test` });
      const response = await app.gql(
        'mutation ($id: ID!, $e: String!) { updateUser(id: $id, input: { email: $e }) { email } }',
        {
          key: admin.key,
          variables: { id: mine.body.data!.createUser.id, e: `${base}-RENE\u0301@example.test` },
        },
      );
      expect(response.body.errors![0].extensions!.code).toBe('CONFLICT');
    });

    it('the CLI path (createWithAdmin) is a CONFLICT for a look-alike too', async () => {
      const base = local();
      await create({ email: `${base}-zo\u00eb@example.test` });
      await expect(
        app.services.organizations.createWithAdmin({
          name: 'Twin Org',
          adminEmail: `${base}-ZOE\u0308@example.test`,
          adminName: 'Zoe',
        }),
      ).rejects.toMatchObject({ extensions: { code: 'CONFLICT' } });
    });
  });

  describe('invisible and bidirectional-control characters', () => {
    const invisible: Array<[string, string]> = [
      ['zero-width space U+200B', '\u200b'],
      ['zero-width non-joiner U+200C', '\u200c'],
      ['zero-width joiner U+200D', '\u200d'],
      ['word joiner U+2060', '\u2060'],
      ['byte order mark U+FEFF', '\ufeff'],
      ['soft hyphen U+00AD', '\u00ad'],
      ['left-to-right mark U+200E', '\u200e'],
      ['right-to-left mark U+200F', '\u200f'],
      ['Arabic letter mark U+061C', '\u061c'],
      ['right-to-left override U+202E', '\u202e'],
      ['left-to-right embedding U+202A', '\u202a'],
      ['right-to-left isolate U+2067', '\u2067'],
      ['pop directional isolate U+2069', '\u2069'],
      ['Arabic number sign U+0600 (a format character that is not default-ignorable)', '\u0600'],
      ['private-use U+E000', '\ue000'],
      ['unassigned U+0378', '\u0378'],
      ['line separator U+2028', '\u2028'],
      ['paragraph separator U+2029', '\u2029'],
    ];

    it.each(invisible)('%s inside an email: BAD_USER_INPUT on email, nothing created', async (_label, character) => {
      const before = await userCount();
      const response = await create({ email: `${local()}${character}x@example.test` });
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'email' });
      expect(await userCount()).toBe(before);
    });

    it.each(invisible)('%s inside a name: BAD_USER_INPUT on name, nothing created', async (_label, character) => {
      const before = await userCount();
      const response = await create({ email: `${local()}@example.test`, name: `Ada${character} Lovelace` });
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
      expect(await userCount()).toBe(before);
    });

    it.each<[string, string]>([
      ['only zero-width spaces', '\u200b\u200b\u200b'],
      ['only combining marks', '\u0301\u0308'],
      ['only a Hangul filler', '\u3164'],
      ['only a braille blank', '\u2800'],
    ])('a name made of %s: BAD_USER_INPUT on name', async (_label, name) => {
      const response = await create({ email: `${local()}@example.test`, name });
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
    });

    it.each<[string, (base: string) => string]>([
      ['a trailing dot in the domain (the same mailbox as without)', (base) => `${base}@example.test.`],
      ['two dots in a row in the domain', (base) => `${base}@example..test`],
      ['a domain starting with a dot', (base) => `${base}@.example.test`],
      ['Cyrillic а among Latin letters in the local part', (base) => `${base}-\u0430dmin@example.test`],
      ['Greek ο among Latin letters in a domain label', (base) => `${base}@ex\u03bfmple.test`],
    ])('an email with %s: BAD_USER_INPUT on email, nothing created', async (_label, email) => {
      const before = await userCount();
      const response = await create({ email: email(local()) });
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'email' });
      expect(await userCount()).toBe(before);
    });

    it('one script per part is fine: a Cyrillic local part at a Latin domain', async () => {
      const response = await create({ email: `\u0430\u0434\u043c\u0438\u043d@${local()}.example.test` });
      expect(response.body.errors).toBeUndefined();
    });

    it('updateUser and the CLI path refuse them too', async () => {
      const target = await create({ email: `${local()}@example.test` });
      const update = await app.gql(
        'mutation ($id: ID!, $n: String!) { updateUser(id: $id, input: { name: $n }) { name } }',
        {
          key: admin.key,
          variables: { id: target.body.data!.createUser.id, n: 'Eve\u202Eliam' },
        },
      );
      expect(update.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
      await expect(
        app.services.organizations.createWithAdmin({
          name: 'Org\u200b',
          adminEmail: `${local()}@example.test`,
          adminName: 'Admin',
        }),
      ).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'name' } });
      await expect(
        app.services.organizations.createWithAdmin({
          name: 'Org',
          adminEmail: `${local()}\u200b@example.test`,
          adminName: 'Admin',
        }),
      ).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'email' } });
    });

    it('names in other scripts, with accents and emoji-free symbols, are fine', async () => {
      for (const name of ['Zoë Åström-Nuñez', 'محمد رضا', '李小龍', 'Ελένη', "O'Brien & Co."]) {
        const response = await create({ email: `${local()}@example.test`, name });
        expect(response.body.data!.createUser.name).toBe(name);
      }
    });
  });

  describe('unpaired surrogates in any text input: 400 BAD_USER_INPUT naming the field, nothing stored', () => {
    it.each<[string, string, Record<string, unknown>, boolean, string]>([
      ['a new user name', CREATE, { i: { email: 'lone@example.test', name: 'Lone \ud800 Surrogate' } }, true, 'name'],
      ['a new user email', CREATE, { i: { email: 'lone\udc00@example.test', name: 'Lone' } }, true, 'email'],
      [
        'a search',
        'query ($s: String) { users(filter: { search: $s }) { totalCount } }',
        { s: '\ud83d' },
        true,
        'search',
      ],
      [
        'a sign-in password, without credentials',
        'mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { token } }',
        { e: 'a@b.test', p: 'pass\udfffword-long-enough' },
        false,
        'password',
      ],
      ['an id', 'query ($id: ID!) { user(id: $id) { id } }', { id: '\ud800' }, true, 'id'],
    ])('%s', async (_label, query, variables, withKey, field) => {
      const before = await userCount();
      const response = await app.gql(query, { variables, key: withKey ? admin.key : undefined });
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(/unpaired surrogate/),
          extensions: { code: 'BAD_USER_INPUT', field },
        }),
      ]);
      expect(await userCount()).toBe(before);
    });

    it('a well-formed pair (an emoji) is not a lone surrogate', async () => {
      const response = await app.gql('query ($s: String) { users(filter: { search: $s }) { totalCount } }', {
        key: admin.key,
        variables: { s: '\ud83d\ude00' },
      });
      expect(response.status).toBe(200);
    });
  });

  describe('search in the form things are stored in', () => {
    it('finds an email by a fullwidth or upper-case look-alike, and a name typed decomposed', async () => {
      const base = local();
      const created = await create({ email: `${base}ada@example.test`, name: `Jos\u00e9 ${base}` });
      expect(created.body.errors).toBeUndefined();
      const search = async (text: string) => {
        const response = await app.gql(
          'query ($s: String!) { users(first: 5, filter: { search: $s }) { edges { node { id } } } }',
          {
            key: admin.key,
            variables: { s: text },
          },
        );
        return response.body.data!.users.edges.map((edge: { node: { id: string } }) => edge.node.id);
      };
      const id = created.body.data!.createUser.id;
      const fullwidth = [...`${base}ada`].map((c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0)).join('');
      expect(await search(fullwidth)).toEqual([id]);
      expect(await search(`Jose\u0301 ${base}`)).toEqual([id]);
    });
  });
});
