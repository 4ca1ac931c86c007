import { randomBytes, scryptSync } from 'node:crypto';

import type { Client } from 'pg';

import type { PauseHooks } from '../../src/authorization/authority';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { type GraphQLResponse, startAppWithSecondConnection, type TestApp } from '../helpers/test-app';

const LOGIN = 'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token } }';
const CHANGE = 'mutation ($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }';
const ME = '{ me { id } }';
const NEW_PASSWORD = 'a completely new password';
/** "é" as one code point (NFC) and as "e" + U+0301 (NFD): one password to the service (NFKC). */
const NFC = 'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
const NFD = NFC.normalize('NFD');

/** A hash from before passwords were normalized: made from the password as it arrived (cheap parameters). */
function legacyHash(password: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N: 1024, r: 8, p: 1 });
  return ['scrypt', 1024, 8, 1, salt.toString('base64'), hash.toString('base64')].join('$');
}
/** The advisory lock a test holds to keep a sign-in's transaction waiting inside its session insert. */
const HOLD_SESSION_INSERTS = 4242;

/**
 * Case 4 of the authority issue: a session is created only if, in its insert's transaction, the user is
 * still active and the password hash it verified is still the current one; a password change or a
 * deactivation that commits after the session ends it. Both orders are held open deterministically.
 */
describe('sign-in and password change without races', () => {
  let app: TestApp;
  let admin: TestUser;
  let holder: Client;
  let close: () => Promise<void>;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    ({
      app,
      other: holder,
      close,
    } = await startAppWithSecondConnection({ hooks, env: { AUTH_FAILURE_LIMIT: '10000' } }));
    admin = await createOrganization(app, 'Sign-in Race Org', TEST_PASSWORD);
    // A trigger that waits: a sign-in's transaction, its locks taken, stops at its session insert while the test holds the lock.
    await app.dataSource.query(`
      CREATE FUNCTION hold_session_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_xact_lock_shared(${HOLD_SESSION_INSERTS}); RETURN NEW; END $$`);
    await app.dataSource.query(
      `CREATE TRIGGER hold_session_inserts BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION hold_session_inserts()`,
    );
  });
  afterEach(() => {
    delete hooks.afterPasswordVerified;
  });
  afterAll(() => close());

  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const setActive = (user: TestUser, active: boolean) =>
    app.gql(`mutation ($id: ID!) { ${active ? 'reactivateUser' : 'deactivateUser'}(id: $id) { isActive } }`, {
      key: admin.key,
      variables: { id: user.id },
    });
  const signIn = (user: TestUser, password = TEST_PASSWORD) =>
    app.gql<{ login: { token: string } }>(LOGIN, { variables: { email: user.email, password } });
  const liveSessions = async (user: TestUser): Promise<number> => {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM sessions WHERE user_id = $1 AND revoked_at IS NULL`,
      [user.id],
    );
    return n;
  };
  const refusedSignIn = (response: GraphQLResponse) => {
    expect(response.body.data).toBeNull();
    expect(response.body.errors![0]).toMatchObject({
      message: 'Email or password is incorrect.',
      extensions: { code: 'UNAUTHENTICATED' },
    });
  };

  it('case 4: a deactivation committed during the password check gets no session, not even after reactivation (4 of 4)', async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      const person = await createUser(app, admin, { password: TEST_PASSWORD });
      hooks.afterPasswordVerified = async (email) => {
        if (email === person.email)
          expect((await setActive(person, false)).body.data!.deactivateUser.isActive).toBe(false);
      };
      refusedSignIn(await signIn(person));
      delete hooks.afterPasswordVerified;
      await setActive(person, true);
      expect(await liveSessions(person)).toBe(0);
    }
  });

  // Found by an adversarial review: the session's transaction checked "active now" and "the same hash" only, so a
  // deactivation undone before the sign-in went on was forgotten.
  it('case 4: a deactivation and a reactivation both committed during the password check: no session', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    hooks.afterPasswordVerified = async (email) => {
      if (email !== person.email) return;
      expect((await setActive(person, false)).body.data!.deactivateUser.isActive).toBe(false);
      expect((await setActive(person, true)).body.data!.reactivateUser.isActive).toBe(true);
    };
    refusedSignIn(await signIn(person));
    delete hooks.afterPasswordVerified;
    expect(await liveSessions(person)).toBe(0);
    // Signing in again, after the reactivation, works.
    expect((await signIn(person)).body.data!.login.token).toMatch(/^cas_/);
  });

  it('a change of the user committed during the password check (a new email) asks for the sign-in again', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const newEmail = `renamed-${person.email}`;
    hooks.afterPasswordVerified = async (email) => {
      if (email !== person.email) return;
      const renamed = await app.gql(
        'mutation ($id: ID!, $email: String!) { updateUser(id: $id, input: { email: $email }) { email } }',
        {
          key: admin.key,
          variables: { id: person.id, email: newEmail },
        },
      );
      expect(renamed.body.data).toEqual({ updateUser: { email: newEmail } });
    };
    refusedSignIn(await signIn(person));
    delete hooks.afterPasswordVerified;
    expect(await liveSessions(person)).toBe(0);
    expect((await signIn({ ...person, email: newEmail })).body.data!.login.token).toMatch(/^cas_/);
  });

  it('case 4: a deactivation that waits for a sign-in in progress ends the session it created', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    await holder.query('SELECT pg_advisory_lock($1)', [HOLD_SESSION_INSERTS]);
    let released = false;
    try {
      const signingIn = signIn(person);
      await waitForLockWaiters(app, 1);
      // The sign-in holds its organization and user rows: the deactivation queues behind them.
      const deactivating = setActive(person, false);
      await waitForLockWaiters(app, 2);
      await holder.query('SELECT pg_advisory_unlock($1)', [HOLD_SESSION_INSERTS]);
      released = true;
      const { token } = (await signingIn).body.data!.login;
      expect((await deactivating).body.data!.deactivateUser.isActive).toBe(false);
      expect((await app.gql(ME, bearer(token))).status).toBe(401);
      await setActive(person, true);
      expect((await app.gql(ME, bearer(token))).status).toBe(401);
      expect(await liveSessions(person)).toBe(0);
    } finally {
      if (!released) await holder.query('SELECT pg_advisory_unlock($1)', [HOLD_SESSION_INSERTS]);
    }
  });

  it('case 4: a sign-in with the old password while the password changes gets no session', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const changer = await login(app, person);
    let changing: Promise<GraphQLResponse> | null = null;
    // The sign-in has verified the old password: the change (which passes this hook too) commits now.
    hooks.afterPasswordVerified = async (email) => {
      if (email !== person.email || changing) return;
      changing = app.gql(CHANGE, { ...bearer(changer), variables: { c: TEST_PASSWORD, n: NEW_PASSWORD } });
      await changing;
    };
    refusedSignIn(await signIn(person));
    expect((await changing!).body.data).toEqual({ changePassword: true });
    // Only the session that changed the password is left.
    expect(await liveSessions(person)).toBe(1);
    expect((await app.gql(ME, bearer(changer))).status).toBe(200);
  });

  /**
   * The sign-in has verified `typed` against the user's hash; a change from `current` to `next` by the user's own
   * session commits before it creates its session. Returns the sign-in's answer and the change's.
   */
  const signInWhileChanging = async (
    person: TestUser,
    passwords: { typed: string; current: string; next: string },
  ): Promise<{ signedIn: GraphQLResponse; changed: GraphQLResponse }> => {
    const changer = await login(app, { email: person.email, password: passwords.current });
    let changing: Promise<GraphQLResponse> | null = null;
    hooks.afterPasswordVerified = async (email) => {
      if (email !== person.email || changing) return;
      changing = app.gql(CHANGE, { ...bearer(changer), variables: { c: passwords.current, n: passwords.next } });
      await changing;
    };
    const signedIn = await signIn(person, passwords.typed);
    delete hooks.afterPasswordVerified;
    return { signedIn, changed: await changing! };
  };

  it('case 4: a sign-in verified against a hash from before normalization gets no session once a change to a new one commits', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    await app.dataSource.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [person.id, legacyHash(NFD)]);
    // Typed in NFD: the old hash matches only on its second try, with the password as typed.
    const { signedIn, changed } = await signInWhileChanging(person, { typed: NFD, current: NFD, next: NEW_PASSWORD });
    expect(changed.body.data).toEqual({ changePassword: true });
    refusedSignIn(signedIn);
    expect(await liveSessions(person)).toBe(1);
    const [row] = await app.dataSource.query(`SELECT password_hash FROM users WHERE id = $1`, [person.id]);
    expect(row.password_hash).toMatch(/^scrypt-nfkc\$/);
    refusedSignIn(await signIn(person, NFD));
    expect((await signIn(person, NEW_PASSWORD)).body.data!.login.token).toMatch(/^cas_/);
  });

  it('a change to the same password in another Unicode form is a change: the sign-in verified before it gets no session', async () => {
    const person = await createUser(app, admin, { password: NFC });
    const { signedIn, changed } = await signInWhileChanging(person, { typed: NFC, current: NFC, next: NFD });
    // One password to the service, but a new hash all the same: the other sessions end, as for any change, and so
    // does the sign-in that verified the hash it replaced.
    expect(changed.body.data).toEqual({ changePassword: true });
    refusedSignIn(signedIn);
    expect(await liveSessions(person)).toBe(1);
    // Either form signs in from then on.
    expect((await signIn(person, NFC)).body.data!.login.token).toMatch(/^cas_/);
    expect((await signIn(person, NFD)).body.data!.login.token).toMatch(/^cas_/);
  });

  it('case 4: a password change that waits for a sign-in with the old password ends the session it created', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const changer = await login(app, person);
    await holder.query('SELECT pg_advisory_lock($1)', [HOLD_SESSION_INSERTS]);
    let released = false;
    try {
      const signingIn = signIn(person);
      await waitForLockWaiters(app, 1);
      const changing = app.gql(CHANGE, { ...bearer(changer), variables: { c: TEST_PASSWORD, n: NEW_PASSWORD } });
      await waitForLockWaiters(app, 2);
      await holder.query('SELECT pg_advisory_unlock($1)', [HOLD_SESSION_INSERTS]);
      released = true;
      const { token } = (await signingIn).body.data!.login;
      expect((await changing).body.data).toEqual({ changePassword: true });
      expect((await app.gql(ME, bearer(token))).status).toBe(401);
      expect((await app.gql(ME, bearer(changer))).status).toBe(200);
    } finally {
      if (!released) await holder.query('SELECT pg_advisory_unlock($1)', [HOLD_SESSION_INSERTS]);
    }
  });

  it('a password change whose verified password was replaced meanwhile answers CONFLICT and changes nothing', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    // The same session changes it first (another tab): that session stays signed in, so the answer is CONFLICT.
    let first = true;
    hooks.afterPasswordVerified = async (email) => {
      if (email !== person.email || !first) return;
      first = false;
      const meanwhile = await app.gql(CHANGE, {
        ...bearer(token),
        variables: { c: TEST_PASSWORD, n: 'changed meanwhile' },
      });
      expect(meanwhile.body.data).toEqual({ changePassword: true });
    };
    const response = await app.gql(CHANGE, { ...bearer(token), variables: { c: TEST_PASSWORD, n: NEW_PASSWORD } });
    expect(response.body.errors![0].extensions!.code).toBe('CONFLICT');
    delete hooks.afterPasswordVerified;
    expect((await signIn(person, 'changed meanwhile')).body.data!.login.token).toMatch(/^cas_/);
    refusedSignIn(await signIn(person, NEW_PASSWORD));
  });

  it('a password reset by SQL during a password change ends the session making it: nothing changes but the reset', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    hooks.afterPasswordVerified = async (email) => {
      if (email === person.email)
        await app.dataSource.query(`UPDATE users SET password_hash = 'scrypt$1$1$1$reset$by-operator' WHERE id = $1`, [
          person.id,
        ]);
    };
    const response = await app.gql(CHANGE, { ...bearer(token), variables: { c: TEST_PASSWORD, n: NEW_PASSWORD } });
    // The reset ended the sessions of the old password, this one included (migration PasswordChangeEndsSessions).
    expect(response.body.errors![0].extensions).toEqual({ code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' });
    const [row] = await app.dataSource.query(`SELECT password_hash FROM users WHERE id = $1`, [person.id]);
    expect(row.password_hash).toBe('scrypt$1$1$1$reset$by-operator');
  });
});
