import { randomBytes, scryptSync } from 'node:crypto';

import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const LOGIN = 'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token } }';
const CHANGE = 'mutation ($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }';
const CREATE = 'mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }';

/** "é" as one code point (NFC) and as "e" + COMBINING ACUTE ACCENT (NFD, as macOS and some keyboards send it). */
const NFC = 'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
const NFD = NFC.normalize('NFD');
/** The same password as a Japanese IME in full-width mode types it, and its NFKC form. */
const FULL_WIDTH = '\uff43\uff4f\uff52\uff52\uff45\uff43\uff54 horse battery';
const ASCII = 'correct horse battery';

/**
 * Before normalization: `scrypt$N$r$p$salt$hash` made from the password exactly as it arrived (cheap
 * parameters: verification reads them from the hash).
 */
function legacyHash(password: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N: 1024, r: 8, p: 1 });
  return ['scrypt', 1024, 8, 1, salt.toString('base64'), hash.toString('base64')].join('$');
}

/**
 * NIST SP 800-63B §5.1.1.2: a password is normalized (NFKC) before it is hashed or compared, so the same
 * password typed in another Unicode form signs in, and its length is counted in code points of that form.
 */
describe('passwords are compared in their NFKC form', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app, 'Password Forms Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  const signIn = async (email: string, password: string) => {
    const response = await app.gql<{ login: { token: string } }>(LOGIN, { variables: { email, password } });
    return response.body.errors ? response.body.errors[0].extensions : 'signed in';
  };
  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const storedHash = async (userId: string): Promise<string> =>
    (await app.dataSource.query(`SELECT password_hash FROM users WHERE id = $1`, [userId]))[0].password_hash;

  describe('when a password is set in one form and typed in another', () => {
    it('a password set in NFD signs in typed in NFC, and in NFD', async () => {
      const person = await createUser(app, admin, { password: NFD });
      expect(await signIn(person.email, NFC)).toBe('signed in');
      expect(await signIn(person.email, NFD)).toBe('signed in');
    });

    it('a password set in NFC signs in typed in NFD', async () => {
      const person = await createUser(app, admin, { password: NFC });
      expect(await signIn(person.email, NFD)).toBe('signed in');
    });

    it('compatibility forms are one password: full-width letters and the ASCII ones, a ligature and its letters', async () => {
      const person = await createUser(app, admin, { password: FULL_WIDTH });
      expect(await signIn(person.email, ASCII)).toBe('signed in');
      const other = await createUser(app, admin, { password: 'o\ufb03ce supplies 2024' });
      expect(await signIn(other.email, 'office supplies 2024')).toBe('signed in');
    });

    it('a different password is still refused', async () => {
      const person = await createUser(app, admin, { password: NFC });
      expect(await signIn(person.email, NFC.replace('\u00e9', 'e'))).toMatchObject({ code: 'UNAUTHENTICATED' });
    });

    it('changePassword: the current password in the other form is accepted, the new one is kept in NFKC', async () => {
      const person = await createUser(app, admin, { password: NFD });
      const token = await login(app, { email: person.email, password: NFD });
      const changed = await app.gql(CHANGE, { ...bearer(token), variables: { c: NFC, n: FULL_WIDTH } });
      expect(changed.body).toEqual({ data: { changePassword: true } });
      expect(await signIn(person.email, ASCII)).toBe('signed in');
    });

    it('the first admin made as the CLI makes one (no request) is normalized too', async () => {
      const first = await createOrganization(app, 'Password Forms CLI Org', NFD);
      expect(await signIn(first.email, NFC)).toBe('signed in');
    });

    it('a new hash is tagged as made from the normalized form', async () => {
      const person = await createUser(app, admin, { password: NFD });
      expect(await storedHash(person.id)).toMatch(/^scrypt-nfkc\$/);
    });
  });

  describe('when the stored hash predates normalization (made from the password as it arrived)', () => {
    const withLegacyHash = async (password: string): Promise<TestUser> => {
      const person = await createUser(app, admin, { password: TEST_PASSWORD });
      await app.dataSource.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [
        person.id,
        legacyHash(password),
      ]);
      return person;
    };

    it('a password that was stored in NFD still signs in typed the same way', async () => {
      const person = await withLegacyHash(NFD);
      expect(await signIn(person.email, NFD)).toBe('signed in');
    });

    it('a password that was stored in NFC signs in typed in NFD', async () => {
      const person = await withLegacyHash(NFC);
      expect(await signIn(person.email, NFC)).toBe('signed in');
      expect(await signIn(person.email, NFD)).toBe('signed in');
    });

    it('a password that was stored in full-width letters still signs in typed that way', async () => {
      const person = await withLegacyHash(FULL_WIDTH);
      expect(await signIn(person.email, FULL_WIDTH)).toBe('signed in');
    });

    it('a plain ASCII password still signs in, and a wrong one is refused', async () => {
      const person = await withLegacyHash(TEST_PASSWORD);
      expect(await signIn(person.email, TEST_PASSWORD)).toBe('signed in');
      expect(await signIn(person.email, `${TEST_PASSWORD}!`)).toMatchObject({ code: 'UNAUTHENTICATED' });
    });
  });

  describe('when a new password is checked', () => {
    const create = async (password: string) => {
      const response = await app.gql(CREATE, {
        key: admin.key,
        variables: {
          input: { email: `forms-${randomBytes(4).toString('hex')}@example.test`, name: 'Forms', password },
        },
      });
      return response.body.errors ? response.body.errors[0].extensions : 'created';
    };

    it('the minimum length counts the normalized form: 12 code units in NFD that are 6 characters are too short', async () => {
      const short = '\u00e9'.repeat(6).normalize('NFD');
      expect(short).toHaveLength(12);
      expect(await create(short)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'password' });
    });

    it('the minimum length counts code points: six emoji (twelve UTF-16 code units) are too short', async () => {
      expect(await create('\u{1F600}'.repeat(6))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'password' });
    });

    it('a ligature counts as the letters it stands for: four "ffi" ligatures are a 12-character password', async () => {
      expect(await create('\ufb03'.repeat(4))).toBe('created');
    });

    it('the maximum length counts the normalized form, in both directions', async () => {
      // 2048 code units as sent, 1024 characters once composed: the longest password.
      expect(await create('\u00e9'.repeat(1024).normalize('NFD'))).toBe('created');
      // 60 characters as sent, 1080 once the ligature is spelled out (U+FDFA is 18 characters in NFKC).
      expect(await create('\ufdfa'.repeat(60))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'password' });
    });

    it('an unpaired surrogate is refused as BAD_USER_INPUT (400), not a server error, at creation and at sign-in', async () => {
      const lone = `${TEST_PASSWORD}\ud800`;
      const created = await app.gql(CREATE, {
        key: admin.key,
        variables: { input: { email: 'lone-surrogate@example.test', name: 'Lone', password: lone } },
      });
      expect(created.status).toBe(400);
      expect(created.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
      const signedIn = await app.gql(LOGIN, { variables: { email: admin.email, password: lone } });
      expect(signedIn.status).toBe(400);
      expect(signedIn.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
    });

    it('an unassigned code point is refused: its normalization could change with a later Unicode version', async () => {
      expect(await create(`${TEST_PASSWORD}\u{50000}`)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'password' });
    });

    // RFC 8265 (PRECIS OpaqueString) disallows control characters: a sign-in form cannot type a line break (a
    // browser's password field drops it), and a tab or an escape moves focus or closes the dialog.
    const CONTROLS = ['\n', '\r', '\t', '\u001b', '\u007f', '\u0085'];

    it('a control character (line break, tab, escape, DEL, NEL) is refused at creation and at a change', async () => {
      const person = await createUser(app, admin, { password: ASCII });
      const token = await login(app, { email: person.email, password: ASCII });
      for (const control of CONTROLS) {
        const password = `${TEST_PASSWORD}${control}more`;
        expect({ control, created: await create(password) }).toMatchObject({
          control,
          created: { code: 'BAD_USER_INPUT', field: 'password' },
        });
        const changed = await app.gql(CHANGE, { ...bearer(token), variables: { c: ASCII, n: password } });
        expect({ control, errors: changed.body.errors?.map((error) => error.extensions) }).toEqual({
          control,
          errors: [{ code: 'BAD_USER_INPUT', field: 'newPassword' }],
        });
        expect(changed.body.errors![0].message).toMatch(/control character/);
      }
      expect(await signIn(person.email, ASCII)).toBe('signed in');
    });

    it('spaces, emoji with joiners and variation selectors, and right-to-left marks stay allowed', async () => {
      for (const password of [
        '  spaces  around  and  inside  ',
        '\u{1F469}\u200D\u{1F4BB}\u{1F469}\u200D\u{1F4BB}\u{1F469}\u200D\u{1F4BB}\u{1F469}\u200D\u{1F4BB}',
        '\u2764\uFE0F long enough heart password',
        '\u05E9\u05DC\u05D5\u05DD \u200F\u05E2\u05D5\u05DC\u05DD 12345',
      ]) {
        expect({ password, created: await create(password) }).toEqual({ password, created: 'created' });
      }
    });

    it('a password set before the rule, with a control character in it, still signs in: a sign-in judges no form', async () => {
      const person = await createUser(app, admin, { password: TEST_PASSWORD });
      const old = `${TEST_PASSWORD}\tand a tab`;
      await app.dataSource.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [person.id, legacyHash(old)]);
      expect(await signIn(person.email, old)).toBe('signed in');
      expect(await signIn(person.email, `${TEST_PASSWORD}\nand a tab`)).toMatchObject({ code: 'UNAUTHENTICATED' });
    });
  });
});
