import { Role } from '../../src/users/user.entity';
import {
  createOrganization,
  createUser,
  login,
  TEST_PASSWORD,
  type TestUser,
  uniqueEmail,
} from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const USERS = `query ($filter: UsersFilter, $first: Int, $after: String) {
  users(filter: $filter, first: $first, after: $after) {
    totalCount edges { cursor node { id name email role isActive } } pageInfo { hasNextPage endCursor }
  }
}`;

describe('Manage Users: listing, editing and protecting users', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Listing Org');
  });
  afterAll(() => app.close());

  async function count(table: string): Promise<number> {
    const [{ n }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM ${table}`);
    return n;
  }

  describe('users()', () => {
    let org: TestUser;
    beforeAll(async () => {
      org = await createOrganization(app, 'Pagination Org');
      const names = ['Zoe Quinn', 'Adam Smith', 'Bea Jones', 'Carl Jones', 'Dana Brown', 'Eve Adams', 'Frank Ocean'];
      for (const [i, name] of names.entries()) {
        await createUser(app, org, {
          name,
          role: i % 2 ? Role.MANAGER : Role.MEMBER,
          email: uniqueEmail(name.split(' ')[0]),
        });
      }
    });

    it('pages through every user once, ordered by name then id, with a stable totalCount', async () => {
      const seen: string[] = [];
      let after: string | null = null;
      for (;;) {
        const response: any = await app.gql(USERS, { key: org.key, variables: { first: 3, after } });
        expect(response.body.errors).toBeUndefined();
        const page = response.body.data.users;
        expect(page.totalCount).toBe(8);
        seen.push(...page.edges.map((edge: any) => edge.node.name));
        if (!page.pageInfo.hasNextPage) break;
        after = page.pageInfo.endCursor;
      }
      expect(seen).toEqual([...seen].sort());
      expect(seen).toHaveLength(8);
      expect(seen).toContain('Admin of Pagination Org');
    });

    it('filters by search (name or email, any case), role and isActive; totalCount follows the filter', async () => {
      const search = await app.gql(USERS, { key: org.key, variables: { filter: { search: 'jONES' } } });
      expect(search.body.data!.users.edges.map((e: any) => e.node.name)).toEqual(['Bea Jones', 'Carl Jones']);
      expect(search.body.data!.users.totalCount).toBe(2);

      const byEmail = await app.gql(USERS, { key: org.key, variables: { filter: { search: 'FRANK-' } } });
      expect(byEmail.body.data!.users.edges.map((e: any) => e.node.name)).toEqual(['Frank Ocean']);

      const managers = await app.gql(USERS, { key: org.key, variables: { filter: { role: 'MANAGER' } } });
      expect(managers.body.data!.users.edges.every((e: any) => e.node.role === 'MANAGER')).toBe(true);
      expect(managers.body.data!.users.totalCount).toBe(3);

      const wildcard = await app.gql(USERS, { key: org.key, variables: { filter: { search: '%' } } });
      expect(wildcard.body.data!.users.totalCount).toBe(0);

      const inactive = await app.gql(USERS, { key: org.key, variables: { filter: { isActive: false } } });
      expect(inactive.body.data!.users.totalCount).toBe(0);
    });

    it.each([
      [{ first: 501 }, 'first'],
      [{ first: -1 }, 'first'],
      [{ after: 'not-a-cursor' }, 'after'],
      // An empty cursor is none this API gave, not "no cursor" (that is null, or no argument).
      [{ after: '' }, 'after'],
      [{ after: Buffer.from('["x","nope"]').toString('base64url') }, 'after'],
      [{ filter: { search: 'x'.repeat(201) } }, 'search'],
    ])('refuses %j with BAD_USER_INPUT', async (variables, field) => {
      const response = await app.gql(USERS, { key: org.key, variables });
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    });

    it('allows a page of 500', async () => {
      const response = await app.gql(USERS, { key: org.key, variables: { first: 500 } });
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data!.users.edges).toHaveLength(8);
    });
  });

  describe('createUser and updateUser validation', () => {
    const CREATE = 'mutation ($input: CreateUserInput!) { createUser(input: $input) { id email name role } }';

    it('creates a MEMBER by default, trimming the name and email', async () => {
      const email = uniqueEmail('trim');
      const response = await app.gql(CREATE, {
        key: admin.key,
        variables: { input: { email: `  ${email} `, name: '  Pat Doe ' } },
      });
      expect(response.body.data!.createUser).toMatchObject({ email, name: 'Pat Doe', role: 'MEMBER' });
    });

    it.each([
      [{ email: 'not-an-email', name: 'X' }, 'email'],
      [{ email: 'two@@example.test', name: 'X' }, 'email'],
      [{ email: 'a b@example.test', name: 'X' }, 'email'],
      [{ email: 'ok@example.test', name: '' }, 'name'],
      [{ email: 'ok@example.test', name: '   ' }, 'name'],
      [{ email: 'ok@example.test', name: 'x'.repeat(201) }, 'name'],
      [{ email: 'ok@example.test', name: 'X', password: 'short' }, 'password'],
    ])('refuses %j with BAD_USER_INPUT and writes nothing', async (input, field) => {
      const [users, keys] = [await count('users'), await count('access_keys')];
      const response = await app.gql(CREATE, { key: admin.key, variables: { input } });
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
      expect([await count('users'), await count('access_keys')]).toEqual([users, keys]);
    });

    it('accepts a 200-character name', async () => {
      const response = await app.gql(CREATE, {
        key: admin.key,
        variables: { input: { email: uniqueEmail(), name: 'n'.repeat(200) } },
      });
      expect(response.body.errors).toBeUndefined();
    });

    it('refuses a duplicate email in any letter case, across organizations, with CONFLICT', async () => {
      const other = await createOrganization(app, 'Other Org');
      const existing = await createUser(app, other);
      const users = await count('users');
      const response = await app.gql(CREATE, {
        key: admin.key,
        variables: { input: { email: existing.email.toUpperCase(), name: 'Copy' } },
      });
      expect(response.body.errors![0].extensions!.code).toBe('CONFLICT');
      expect(await count('users')).toBe(users);

      const mine = await createUser(app, admin);
      const update = await app.gql(
        'mutation ($id: ID!, $email: String!) { updateUser(id: $id, input: { email: $email }) { id } }',
        {
          key: admin.key,
          variables: { id: mine.id, email: existing.email.toUpperCase() },
        },
      );
      expect(update.body.errors![0].extensions!.code).toBe('CONFLICT');
    });

    it('stores a password only as a scrypt hash', async () => {
      const email = uniqueEmail('pw');
      const response = await app.gql(CREATE, {
        key: admin.key,
        variables: { input: { email, name: 'With Password', password: 'correct horse battery' } },
      });
      const [row] = await app.dataSource.query(`SELECT password_hash FROM users WHERE id = $1`, [
        response.body.data!.createUser.id,
      ]);
      expect(row.password_hash).toMatch(/^scrypt-nfkc\$131072\$8\$1\$/);
      expect(row.password_hash).not.toContain('correct horse');
    });

    it('answers BAD_USER_INPUT for a malformed id and NOT_FOUND for an unknown one, and changes nothing', async () => {
      const malformed = await app.gql('mutation { updateUser(id: "123", input: { name: "X" }) { id } }', {
        key: admin.key,
      });
      expect(malformed.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
      const unknown = await app.gql(
        'mutation { updateUser(id: "6f1c1d7e-8d1b-4a5e-9a7c-2b3c4d5e6f70", input: { name: "X" }) { id } }',
        {
          key: admin.key,
        },
      );
      expect(unknown.body.errors![0].extensions!.code).toBe('NOT_FOUND');
      const lookup = await app.gql('{ user(id: "6f1c1d7e-8d1b-4a5e-9a7c-2b3c4d5e6f70") { id } }', { key: admin.key });
      expect(lookup.body.errors![0].extensions!.code).toBe('NOT_FOUND');
      expect(lookup.body.data).toEqual({ user: null });
    });

    it('answers a wrongly typed variable with BAD_USER_INPUT', async () => {
      const response = await app.gql(USERS, { key: admin.key, variables: { first: 'ten' } });
      expect(response.status).toBe(400);
      expect(response.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
    });
  });

  describe('an email domain label that is no hostname label: a hyphen at an end (RFC 1035, 5321), an xn-- label that is no punycode, a label UTS 46 refuses', () => {
    const CREATE = 'mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }';
    const UPDATE = 'mutation ($id: ID!, $email: String!) { updateUser(id: $id, input: { email: $email }) { email } }';
    const LOGIN = 'mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { token } }';
    const HYPHEN = 'A label of the domain of an email must not start or end with a hyphen.';
    const PUNYCODE = 'A label of the domain of an email that starts with xn-- must be valid punycode (IDNA).';
    const HYPHENATED = [
      ['a label starting with a hyphen', 'a@-x.example'],
      ['a label ending with a hyphen', 'a@x-.example'],
      ['a later label starting with a hyphen', 'a@mail.-x.example'],
      ['a top-level label ending with a hyphen', 'a@x.example-'],
      ['a non-ASCII label starting with a hyphen', 'a@-b\u00fccher.example'],
      ['an A-label ending with a hyphen (it would decode to bcher-kva)', 'a@xn--bcher-kva-.example'],
      ['an A-label whose U-label ends with a hyphen', 'a@xn----7sb.example'],
    ].map(([label, email]) => [label, email, HYPHEN]);
    // An A-label that is no punycode was stored as typed: the domain of no mailbox.
    const NOT_PUNYCODE = [
      ['an A-label that does not decode', 'a@xn--zz.example'],
      ['an A-label decoding to a control character', 'a@xn--a.example'],
      ['an A-label that does not decode, next to one that does', 'a@xn--zz.xn--bcher-kva.example'],
      ['an upper-case A-label that does not decode', 'a@XN--ZZ.example'],
    ].map(([label, email]) => [label, email, PUNYCODE]);
    // A label UTS 46 or the URL Standard refuses was stored folded (or, through node:url, percent-decoded).
    const NOT_UTS46 = [
      ['a percent escape (node:url decoded it: stored as a@xay.example)', 'a@x%41y.example'],
      ['a URL delimiter', 'a@x#y.example'],
      ['a Hebrew and a Latin letter in one label (the bidi rule)', 'a@\u05d0b.example'],
      ['a label starting with a combining mark', 'a@\u0301x.example'],
      ['a character UTS 46 disallows (an ideographic description character)', 'a@x\u2ff0y.example'],
    ].map(([label, email]) => [
      label,
      email,
      'A label of the domain of an email must be a valid internationalized domain name label (UTS 46).',
    ]);
    // The typed text shows no joiner; the decoded label holds one (क्\u200cष): a look-alike of क्ष.
    const DECODED_JOINER = [
      [
        'an A-label decoding to a zero-width non-joiner',
        'a@xn--11b2ezcs70k.example',
        'Email must not contain invisible, unassigned, private-use, line-separator or text-direction characters (zero-width spaces and joiners, soft hyphens, direction marks or overrides).',
      ],
    ];
    const MALFORMED = [...HYPHENATED, ...NOT_PUNYCODE, ...NOT_UTS46, ...DECODED_JOINER];
    const rows = async () => app.dataSource.query('SELECT id, email, updated_at FROM users ORDER BY id');

    it.each(MALFORMED)(
      '%s (%s): createUser, updateUser and the CLI path refuse it, nothing changes',
      async (_l, email, message) => {
        const target = await createUser(app, admin);
        const [before, keys] = [await rows(), await count('access_keys')];
        const created = await app.gql(CREATE, { key: admin.key, variables: { input: { email, name: 'Hyphen' } } });
        const updated = await app.gql(UPDATE, { key: admin.key, variables: { id: target.id, email } });
        // Refused as a malformed email is: the same HTTP status (a resolver's refusal) and code.
        const malformed = await app.gql(CREATE, { key: admin.key, variables: { input: { email: 'a@b', name: 'X' } } });
        expect(malformed.body.errors![0].extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'email' });
        for (const response of [created, updated]) {
          expect(response.status).toBe(malformed.status);
          expect(response.body.errors).toEqual([
            expect.objectContaining({
              message,
              extensions: { code: 'BAD_USER_INPUT', field: 'email' },
            }),
          ]);
        }
        await expect(
          app.services.organizations.createWithAdmin({ name: 'Hyphen Org', adminEmail: email, adminName: 'Admin' }),
        ).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'email' } });
        expect([await rows(), await count('access_keys')]).toEqual([before, keys]);
      },
    );

    it('a hyphen inside a label is fine: a@x-y.example, and an A-label (xn--)', async () => {
      for (const email of [uniqueEmail('in-side').replace('@', '@x-y.'), `a-${Date.now()}@xn--bcher-kva.example`]) {
        const response = await app.gql(CREATE, { key: admin.key, variables: { input: { email, name: 'Inside' } } });
        expect(response.body.errors).toBeUndefined();
      }
    });

    it('sign-in with such an email fails as an unknown email does: same answer, one password verification', async () => {
      const attempt = async (email: string) => {
        const before = app.services.passwords.verifications;
        const response = await app.gql(LOGIN, { variables: { e: email, p: TEST_PASSWORD } });
        return {
          status: response.status,
          body: response.body,
          verified: app.services.passwords.verifications - before,
        };
      };
      const unknown = await attempt(uniqueEmail('nobody'));
      expect(unknown.body.errors![0].extensions).toEqual({ code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' });
      for (const [, email] of MALFORMED) expect(await attempt(email)).toEqual(unknown);
      // Longer than MAX_TYPED_EMAIL_LENGTH as typed: not even put in canonical form (thousands of labels to map).
      expect(await attempt(`a@${'\u00fc.'.repeat(2000)}example`)).toEqual(unknown);
    });

    it('an email longer than four times 254 characters as typed: refused before it is put in canonical form', async () => {
      const email = `a@${'\u00fc.'.repeat(2000)}example`;
      const [before, keys] = [await rows(), await count('access_keys')];
      const created = await app.gql(CREATE, { key: admin.key, variables: { input: { email, name: 'Long' } } });
      expect(created.body.errors).toEqual([
        expect.objectContaining({
          message: 'An email must be at most 254 characters long.',
          extensions: { code: 'BAD_USER_INPUT', field: 'email' },
        }),
      ]);
      expect([await rows(), await count('access_keys')]).toEqual([before, keys]);
    });
  });

  describe('a user without a key (an import)', () => {
    const SAVE = 'mutation ($id: ID!, $name: String!) { updateUser(id: $id, input: { name: $name }) { id name } }';
    const keyRows = async (userId: string) =>
      (await app.dataSource.query(`SELECT count(*)::int AS n FROM access_keys WHERE user_id = $1`, [userId]))[0]
        .n as number;

    it.each([Role.MEMBER, Role.MANAGER])(
      "a %s's save of their own name creates no key; an admin's save of the same user does",
      async (role) => {
        const person = await createUser(app, admin, { role, password: TEST_PASSWORD });
        const token = await login(app, person);
        await app.dataSource.query(`DELETE FROM access_keys WHERE user_id = $1`, [person.id]);

        const own = await app.gql(SAVE, {
          headers: { authorization: `Bearer ${token}` },
          variables: { id: person.id, name: 'Saved By Myself' },
        });
        expect(own.body.data!.updateUser.name).toBe('Saved By Myself');
        expect(await keyRows(person.id)).toBe(0);

        const byAdmin = await app.gql(
          'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Saved By Admin" }) { name accessKey } }',
          {
            key: admin.key,
            variables: { id: person.id },
          },
        );
        expect(byAdmin.body.data!.updateUser.accessKey).toMatch(/^cak_/);
        expect(await keyRows(person.id)).toBe(1);
        const created = await app.dataSource.query(
          `SELECT actor_user_id FROM audit_events WHERE action = 'ACCESS_KEY_CREATED' AND target_user_id = $1 ORDER BY id`,
          [person.id],
        );
        expect(created.map((row: { actor_user_id: string }) => row.actor_user_id)).toEqual([admin.id, admin.id]);
      },
    );
  });

  describe('the last active admin', () => {
    it('cannot be demoted or deactivated (CONFLICT); with a second admin both work', async () => {
      const org = await createOrganization(app, 'Admins Org');
      const demote = await app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MEMBER) { role } }', {
        key: org.key,
        variables: { id: org.id },
      });
      expect(demote.body.errors![0].extensions!.code).toBe('CONFLICT');
      const deactivate = await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { isActive } }', {
        key: org.key,
        variables: { id: org.id },
      });
      expect(deactivate.body.errors![0].extensions!.code).toBe('CONFLICT');

      const second = await createUser(app, org, { role: Role.ADMIN });
      const now = await app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MEMBER) { role } }', {
        key: second.key,
        variables: { id: org.id },
      });
      expect(now.body.data!.setUserRole.role).toBe('MEMBER');
      const last = await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { isActive } }', {
        key: second.key,
        variables: { id: second.id },
      });
      expect(last.body.errors![0].extensions!.code).toBe('CONFLICT');
    });

    it('two admins demoting each other at the same moment leave one admin', async () => {
      const org = await createOrganization(app, 'Race Org');
      const second = await createUser(app, org, { role: Role.ADMIN });
      const demote = (key: string, id: string) =>
        app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MEMBER) { role } }', { key, variables: { id } });
      const results = await Promise.all([demote(org.key, second.id), demote(second.key, org.id)]);
      const codes = results.map((r) => r.body.errors?.[0]?.extensions?.code ?? 'OK').sort();
      // The organization row serializes them. The loser's act is checked against its role as committed then:
      // FORBIDDEN (its role changed while its request ran), or NOT_FOUND when it authenticated after losing
      // its role (the other admin is invisible to a MEMBER). Either way it changed nothing.
      expect(codes[1]).toBe('OK');
      expect(['FORBIDDEN', 'NOT_FOUND']).toContain(codes[0]);
      const [{ n }] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM users WHERE organization_id = $1 AND role = 'ADMIN' AND is_active`,
        [org.organizationId],
      );
      expect(n).toBe(1);
    });
  });
});
