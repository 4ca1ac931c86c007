import { randomBytes } from 'node:crypto';

import type { PauseHooks } from '../../src/authorization/authority';
import type { Actor } from '../../src/request/actor';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, type TestUser, uniqueEmail } from '../factories/organizations';
import { createTestDatabase, type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';

const DEACTIVATE = 'mutation ($id: ID!) { deactivateUser(id: $id) { id isActive } }';
const SET_ROLE = 'mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }';
const REGENERATE = 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }';
const CREATE =
  'mutation ($email: String!) { createUser(input: { email: $email, name: "Made Meanwhile" }) { id accessKey } }';
const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';

/**
 * PostgreSQL's row locks are not fair to a writer that waits: while an act holds its user's row (and key row)
 * FOR SHARE and a deactivation's UPDATE waits for it, a new FOR SHARE of the same row is granted at once. A
 * stream of overlapping acts or key reveals by one user (a stolen admin key, flooding) could so keep that user's
 * deactivation, demotion or key regeneration waiting until its statement timeout, 503 after 503: the revocation
 * would never commit. Every act therefore first takes a lock PostgreSQL does queue fairly (an advisory lock of
 * the user, shared for the actor, exclusive for the user a change ends the authority of): a request that comes
 * after a waiting revocation waits behind it, and is then judged against it.
 *
 * Each case holds one act of the user open with its locks (a test-only pause), sees the revocation waiting for
 * it, then sends another request of the same user: it must queue too (two statements waiting), not get its
 * locks. The first act then commits, the revocation after it, and the queued request is refused.
 */
describe('a revocation waiting for an act is not overtaken by the same user’s later requests', () => {
  let database: { url: string; drop(): Promise<void> };
  let app: TestApp;
  /** A second instance on the same database (scale-out), with pauses of its own. */
  let peer: TestApp;
  const hooks: PauseHooks = {};
  const peerHooks: PauseHooks = {};
  let admin: TestUser;

  beforeAll(async () => {
    database = await createTestDatabase();
    const secret = randomBytes(32);
    const env = { AUTH_FAILURE_LIMIT: '10000' };
    app = await startTestApp({ database: { url: database.url, secret }, hooks, env });
    peer = await startTestApp({ database: { url: database.url, secret }, hooks: peerHooks, env });
    admin = await createOrganization(app, 'Fair Revocation Org');
  });
  afterEach(() => {
    delete hooks.afterAuthorityCheck;
    delete peerHooks.afterAuthorityCheck;
  });
  afterAll(async () => {
    await app?.close();
    await peer?.close();
    await database?.drop();
  });

  /**
   * Resolves once `count` statements wait for a user's authority lock (pg_stat_activity's wait event `advisory`):
   * not any lock, as the batched last-use write may wait for the held act's key row meanwhile.
   */
  async function waitForAuthorityQueue(count: number): Promise<void> {
    for (;;) {
      const [{ n }] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
      );
      if (n >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * Resolves once `count` statements wait for any lock (a row's or an advisory one), but for the batched last-use
   * write (it may wait for the held act's key row): before a fix, the change a case shows waited for a row lock.
   */
  async function waitForWaiters(count: number): Promise<void> {
    for (;;) {
      const [{ n }] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query NOT LIKE '%k SET last_used_at = CASE%'`,
      );
      if (n >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * Holds the first act of `userId` after its check's locks (`isHeld` resolves then) until `release`;
   * `reachedLater` resolves when a later act of the user has its check's locks.
   */
  function holdFirstAct(userId: string): { isHeld: Promise<void>; release: () => void; reachedLater: Promise<void> } {
    let held!: () => void;
    const isHeld = new Promise<void>((resolve) => (held = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const reachedLater = new Promise<void>((resolve) => (reached = resolve));
    let acts = 0;
    hooks.afterAuthorityCheck = async (actor: Actor) => {
      if (actor.principal.userId !== userId) return;
      if (++acts > 1) return reached();
      held();
      await released;
    };
    return { isHeld, release, reachedLater };
  }

  /**
   * Which comes first: the later request getting past the queue (`overtook`: `passed` resolves, when it has its
   * check's locks or its answer), or it queuing as a second waiter.
   */
  async function laterRequestQueues(passed: Promise<unknown>): Promise<'queued' | 'overtook'> {
    return Promise.race([
      passed.then(() => 'overtook' as const),
      waitForAuthorityQueue(2).then(() => 'queued' as const),
    ]);
  }

  /**
   * An act of `stolen` held with its check's locks, and a deactivation of `stolen` seen queuing behind it;
   * `release` lets the act commit. `beforeDeactivation` runs once the act is held (a case unsets the pause there).
   */
  async function deactivationWaitingBehindAct(
    stolen: TestUser,
    beforeDeactivation: () => void = () => undefined,
  ): Promise<{ release: () => void; first: Promise<GraphQLResponse>; deactivation: Promise<GraphQLResponse> }> {
    const { isHeld, release } = holdFirstAct(stolen.id);
    const first = app.gql(CREATE, { key: stolen.key, variables: { email: uniqueEmail('first') } });
    await isHeld;
    beforeDeactivation();
    const deactivation = app.gql(DEACTIVATE, { key: admin.key, variables: { id: stolen.id } });
    await waitForAuthorityQueue(1);
    return { release, first, deactivation };
  }

  const revocations: Array<[string, (stolen: TestUser) => Promise<GraphQLResponse>, (r: GraphQLResponse) => void]> = [
    [
      'deactivation',
      (stolen) => app.gql(DEACTIVATE, { key: admin.key, variables: { id: stolen.id } }),
      (r) => expect(r.body.data!.deactivateUser.isActive).toBe(false),
    ],
    [
      'demotion',
      (stolen) => app.gql(SET_ROLE, { key: admin.key, variables: { id: stolen.id, role: 'MEMBER' } }),
      (r) => expect(r.body.data!.setUserRole.role).toBe('MEMBER'),
    ],
    [
      'key regeneration',
      (stolen) => app.gql(REGENERATE, { key: admin.key, variables: { id: stolen.id } }),
      (r) => expect(r.body.data!.regenerateAccessKey.accessKey).toMatch(/^cak_/),
    ],
  ];

  it.each(revocations)('%s: a later act of the user queues behind it and is refused', async (_, revoke, revoked) => {
    const stolen = await createUser(app, admin, { role: Role.ADMIN });
    const { isHeld, release, reachedLater } = holdFirstAct(stolen.id);
    const first = app.gql(CREATE, { key: stolen.key, variables: { email: uniqueEmail('first') } });
    await isHeld;
    const revocation = revoke(stolen);
    await waitForAuthorityQueue(1);

    const laterEmail = uniqueEmail('later');
    const later = app.gql(CREATE, { key: stolen.key, variables: { email: laterEmail } });
    const order = await laterRequestQueues(reachedLater);
    release();
    const [revocationAnswer, laterAnswer] = await Promise.all([revocation, later]);
    await first;

    expect(order).toBe('queued');
    expect(revocationAnswer.body.errors).toBeUndefined();
    revoked(revocationAnswer);
    expect(laterAnswer.body.data ?? null).toBeNull();
    expect(laterAnswer.body.errors![0].extensions!.code).toMatch(/^(UNAUTHENTICATED|FORBIDDEN)$/);
    expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [laterEmail])).toEqual([]);
  });

  it('a key reveal (the one-statement path) of the user queues behind a waiting deactivation, and shows nothing', async () => {
    const stolen = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    // With no pause set, a reveal goes through insertIfConfirmed's one statement, not confirmEach.
    const { release, first, deactivation } = await deactivationWaitingBehindAct(
      stolen,
      () => delete hooks.afterAuthorityCheck,
    );

    const reveal = app.gql(REVEAL, { key: stolen.key, variables: { id: target.id } });
    const order = await laterRequestQueues(reveal);
    release();
    const [deactivated, revealed] = await Promise.all([deactivation, reveal]);
    await first;

    expect(order).toBe('queued');
    expect(deactivated.body.data!.deactivateUser.isActive).toBe(false);
    expect(JSON.stringify(revealed.body)).not.toMatch(/cak_/);
    expect(revealed.body.errors![0].extensions!.code).toBe('UNAUTHENTICATED');
  });

  it('a sign-out of the user queues behind a waiting deactivation, and ends nothing itself', async () => {
    const password = 'a long enough password 4 fairness';
    const stolen = await createUser(app, admin, { role: Role.ADMIN, password });
    const token = await login(app, { email: stolen.email, password });
    const { release, first, deactivation } = await deactivationWaitingBehindAct(stolen);

    const logout = app.gql('mutation { logout }', { headers: { authorization: `Bearer ${token}` } });
    const order = await laterRequestQueues(logout);
    release();
    const [deactivated, loggedOut] = await Promise.all([deactivation, logout]);
    await first;

    expect(order).toBe('queued');
    expect(deactivated.body.data!.deactivateUser.isActive).toBe(false);
    expect(loggedOut.body.data ?? null).toBeNull();
    expect(loggedOut.body.errors![0].extensions!.code).toBe('UNAUTHENTICATED');
    expect(
      await app.dataSource.query(`SELECT 1 FROM audit_events WHERE actor_user_id = $1 AND action = 'LOGGED_OUT'`, [
        stolen.id,
      ]),
    ).toEqual([]);
  });

  /**
   * A key policy applied to existing keys ends keys across the organization at once, so it waits for every act
   * of the organization in flight (the organization row FOR UPDATE against each act's FOR KEY SHARE). Row locks
   * are not fair to it either: while one act holds the row, every later act of any member got its FOR KEY SHARE
   * at once, and a steady stream of them (a stolen member key, flooding) kept the policy waiting until its
   * statement timeout. Each case holds one act of `held`, sees the policy waiting, then sends a request of
   * another user of the organization: it must queue behind the policy, and is then judged against it.
   */
  describe('a key policy waiting for an act of its organization', () => {
    const POLICY =
      'mutation { setAccessKeyPolicy(maxKeyAgeDays: 1, applyToExistingKeys: true) { existingKeysUpdated } }';

    /**
     * A new organization: its admin, an admin whose act is held with its check's locks, and another admin whose
     * key is 30 days old (the policy expires it); the policy seen waiting for the held act.
     */
    async function policyWaitingBehindAct(): Promise<{
      aged: TestUser;
      policy: Promise<GraphQLResponse>;
      release: () => void;
      first: Promise<GraphQLResponse>;
    }> {
      const owner = await createOrganization(app, 'Fair Policy Org');
      const held = await createUser(app, owner, { role: Role.ADMIN });
      const aged = await createUser(app, owner, { role: Role.ADMIN, password: 'a long enough password 4 policy' });
      await app.dataSource.query(`UPDATE access_keys SET created_at = now() - interval '30 days' WHERE user_id = $1`, [
        aged.id,
      ]);
      const { isHeld, release } = holdFirstAct(held.id);
      const first = app.gql(CREATE, { key: held.key, variables: { email: uniqueEmail('first') } });
      await isHeld;
      // Later requests go their own way (a reveal: the one-statement path, which a pause would turn off).
      delete hooks.afterAuthorityCheck;
      const policy = app.gql(POLICY, { key: owner.key });
      await waitForWaiters(1);
      return { aged, policy, release, first };
    }

    it('a later act of another member queues behind it and is judged against it', async () => {
      const { aged, policy, release, first } = await policyWaitingBehindAct();
      const laterEmail = uniqueEmail('later');
      const later = app.gql(CREATE, { key: aged.key, variables: { email: laterEmail } });
      const order = await Promise.race([
        later.then(() => 'overtook' as const),
        waitForWaiters(2).then(() => 'queued' as const),
      ]);
      release();
      const [applied, laterAnswer] = await Promise.all([policy, later]);
      await first;

      expect(order).toBe('queued');
      expect(applied.body.errors).toBeUndefined();
      expect(laterAnswer.body.errors![0].extensions!.code).toBe('UNAUTHENTICATED');
      expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [laterEmail])).toEqual([]);
    });

    it('a later key reveal (the one-statement path) queues behind it and shows nothing', async () => {
      const { aged, policy, release, first } = await policyWaitingBehindAct();
      const reveal = app.gql(REVEAL, { key: aged.key, variables: { id: aged.id } });
      const order = await Promise.race([
        reveal.then(() => 'overtook' as const),
        waitForWaiters(2).then(() => 'queued' as const),
      ]);
      release();
      const [, revealed] = await Promise.all([policy, reveal]);
      await first;

      expect(order).toBe('queued');
      expect(JSON.stringify(revealed.body)).not.toMatch(/cak_/);
      expect(revealed.body.errors![0].extensions!.code).toBe('UNAUTHENTICATED');
    });

    it('a later sign-in queues behind it', async () => {
      const { aged, policy, release, first } = await policyWaitingBehindAct();
      const signIn = login(app, { email: aged.email, password: 'a long enough password 4 policy' });
      const order = await Promise.race([
        signIn.then(() => 'overtook' as const),
        waitForWaiters(2).then(() => 'queued' as const),
      ]);
      release();
      await Promise.all([policy, signIn, first]);

      expect(order).toBe('queued');
    });
  });

  /**
   * A regeneration waits for the reveals of its key in flight (each holds the key row FOR SHARE). Row locks are not
   * fair to it: other admins' later reveals of the same key got their FOR SHARE at once, so a steady stream of them
   * held off the regeneration of a leaked key. (One instance commits one organization's reveals one batch at a time,
   * so the stream needs two or more instances: the later reveal goes to the peer.) Each case holds one admin's
   * reveal of the key with its locks (on the transaction path, where the pause is), sees the regeneration waiting,
   * then sends another admin's reveal of the same key to the peer: it must queue behind the regeneration, and then
   * show the new key.
   */
  it.each([
    ['the one-statement path', false],
    ['the transaction path', true],
  ])(
    'a regeneration waiting for a reveal of its key is not overtaken by a later reveal on another instance (%s)',
    async (_, peerPaused) => {
      const revealer = await createUser(app, admin, { role: Role.ADMIN });
      const other = await createUser(app, admin, { role: Role.ADMIN });
      const leaked = await createUser(app, admin);
      const { isHeld, release } = holdFirstAct(revealer.id);
      const first = app.gql(REVEAL, { key: revealer.key, variables: { id: leaked.id } });
      await isHeld;
      // A pause that holds nothing sends the peer's reveal through confirmEach's transaction.
      if (peerPaused) peerHooks.afterAuthorityCheck = async () => undefined;
      const regeneration = app.gql(REGENERATE, { key: admin.key, variables: { id: leaked.id } });
      await waitForWaiters(1);

      const later = peer.gql(REVEAL, { key: other.key, variables: { id: leaked.id } });
      const order = await Promise.race([
        later.then(() => 'overtook' as const),
        waitForWaiters(2).then(() => 'queued' as const),
      ]);
      release();
      const [regenerated, shown, firstShown] = await Promise.all([regeneration, later, first]);

      expect(order).toBe('queued');
      const newKey = regenerated.body.data!.regenerateAccessKey.accessKey;
      expect(firstShown.body.data!.user.accessKey).toBe(leaked.key);
      expect(shown.body.errors).toBeUndefined();
      expect(shown.body.data!.user.accessKey).toBe(newKey);
    },
  );
});
