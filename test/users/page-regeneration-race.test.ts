import type { Client } from 'pg';

import { AUTHORITY_LOCK_SPACE, type PauseHooks } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import {
  type GraphQLResponse,
  type RequestOptions,
  startAppWithSecondConnection,
  type TestApp,
} from '../helpers/test-app';

const REGENERATE =
  'mutation ($id: ID!, $grace: Int) { regenerateAccessKey(userId: $id, gracePeriodSeconds: $grace) { accessKey } }';

/** The two ways a key is revealed by a read: with a page of users, and on one user's profile. */
const reveals = [
  {
    name: 'a users page',
    query: '{ users(first: 50) { edges { node { id accessKey } } } }',
    shown: (data: any, targetId: string): string =>
      data.users.edges.find((edge: any) => edge.node.id === targetId).node.accessKey,
  },
  {
    name: 'user(id) { accessKey }',
    query: 'query ($id: ID!) { user(id: $id) { id accessKey } }',
    shown: (data: any): string => data.user.accessKey,
  },
];

/**
 * A read that reveals keys reads the key ciphertexts with its users rows, then records the views (with the
 * reader's authority confirmed) and only then answers. A regeneration by another admin that commits in between
 * must not make it show the replaced key: the key shown is the key row's as locked where the views are
 * inserted; and one that starts once those locks are held waits for the views' commit. The window is held open
 * deterministically, either by a pause hook (the view's batch then goes through confirmEach, where the pauses
 * are) or, for the one-statement path (Authority.insertIfConfirmed, as in production), by a transaction of the
 * test holding a lock of the reader's that the statement takes before it locks the keys it shows (the reader's
 * authority lock: queueForAuthority) or after (the reader's sessions row). Not the reader's users row: the
 * statement takes it after the keys' authority locks, which a regeneration waits for.
 */
describe.each(reveals)('a regeneration racing $name', (reveal) => {
  let app: TestApp;
  let other: Client;
  let close: () => Promise<void>;
  let reader: TestUser;
  let regenerator: TestUser;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    ({ app, other, close } = await startAppWithSecondConnection({ hooks }));
    reader = await createOrganization(app, 'Race Org', TEST_PASSWORD);
    regenerator = await createUser(app, reader, { role: Role.ADMIN, name: 'Zed Regenerator' });
    // Warmed into the auth cache: the reader's requests read nothing that the held users row would block.
    await app.gql('{ me { id } }', { key: reader.key });
  });
  afterAll(() => close());
  afterEach(() => {
    delete hooks.beforeAuthorityCheck;
    delete hooks.afterAuthorityCheck;
  });

  async function regenerate(target: TestUser, gracePeriodSeconds: number): Promise<string> {
    const regeneration: GraphQLResponse = await app.gql(REGENERATE, {
      key: regenerator.key,
      variables: { id: target.id, grace: gracePeriodSeconds },
    });
    expect(regeneration.body.errors).toBeUndefined();
    return regeneration.body.data!.regenerateAccessKey.accessKey;
  }

  /** The reader's views of `target`'s key recorded after the regeneration (its event id `after`). */
  async function viewsSince(target: TestUser, after: string): Promise<number> {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events
        WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND target_user_id = $2 AND id > $3`,
      [reader.id, target.id, after],
    );
    return n;
  }

  async function regenerationEventOf(target: TestUser): Promise<string> {
    const [{ id }] = await app.dataSource.query(
      `SELECT max(id)::text AS id FROM audit_events WHERE action = 'ACCESS_KEY_REGENERATED' AND target_user_id = $1`,
      [target.id],
    );
    return id;
  }

  /** The reveal, with the regeneration committed by the pause before the view batch's authority check. */
  async function withPause(target: TestUser, gracePeriodSeconds: number) {
    let issued: string | undefined;
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== reader.id || issued) return;
      issued = await regenerate(target, gracePeriodSeconds);
    };
    const response = await app.gql(reveal.query, { key: reader.key, variables: { id: target.id } });
    return { response, issued };
  }

  /**
   * Starts the reader's reveal of `target` (sent with `credentials`) while the test's own transaction holds the
   * lock `held` takes (`$1`: the reader's id), sees it wait for that lock, runs `during`, then releases it
   * (whatever happens) and returns the reveal's answer.
   */
  async function revealWhileHeld(params: {
    held: string;
    credentials: RequestOptions;
    target: TestUser;
    during: () => Promise<void>;
  }): Promise<GraphQLResponse> {
    let response: Promise<GraphQLResponse> | undefined;
    await other.query('BEGIN');
    try {
      await other.query(params.held, [reader.id]);
      response = app.gql(reveal.query, { ...params.credentials, variables: { id: params.target.id } });
      await waitForLockWaiters(app, 1);
      await params.during();
    } finally {
      await other.query('ROLLBACK');
    }
    return response;
  }

  /**
   * The reveal, its view statement waiting for the reader's authority lock (the first locks it takes), the
   * regeneration committed meanwhile.
   */
  async function withHeldLock(target: TestUser, gracePeriodSeconds: number) {
    let issued: string | undefined;
    const response = await revealWhileHeld({
      held: `SELECT pg_advisory_xact_lock(${AUTHORITY_LOCK_SPACE}, hashtext($1::text))`,
      credentials: { key: reader.key },
      target,
      during: async () => {
        issued = await regenerate(target, gracePeriodSeconds);
      },
    });
    return { response, issued };
  }

  describe.each([
    { path: 'through confirmEach (a pause before the check)', race: withPause },
    { path: 'in one statement (a lock held before the keys are locked)', race: withHeldLock },
  ])('$path', ({ race }) => {
    it.each([
      { grace: 0, replaced: 'the replaced key, which no longer works' },
      { grace: 3600, replaced: 'the key now in its grace period' },
    ])(
      'gracePeriodSeconds $grace: shows the key issued by the regeneration, its view recorded, not $replaced',
      async ({ grace }) => {
        const target = await createUser(app, reader, { name: `Target ${grace} ${Math.random()}` });
        const { response, issued } = await race(target, grace);
        expect(issued).toBeDefined();
        expect(response.body.errors).toBeUndefined();
        const shown = reveal.shown(response.body.data, target.id);
        expect(shown).not.toBe(target.key);
        expect(shown).toBe(issued);
        expect(await viewsSince(target, await regenerationEventOf(target))).toBe(1);
        const signedIn = await app.gql('{ me { id } }', { key: shown });
        expect(signedIn.body.data).toEqual({ me: { id: target.id } });
      },
    );
  });

  /**
   * The reveal, with a regeneration started while the view batch's transaction holds the check's locks (a pause
   * after the check) and seen waiting for a lock before the batch goes on.
   */
  async function regenerateAfterPause(target: TestUser) {
    let regeneration: Promise<string> | undefined;
    hooks.afterAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== reader.id || regeneration) return;
      regeneration = regenerate(target, 0);
      await waitForLockWaiters(app, 1);
    };
    const response = await app.gql(reveal.query, { key: reader.key, variables: { id: target.id } });
    return { response, regeneration: regeneration! };
  }

  /**
   * The reveal by a signed-in reader, its view statement waiting for the reader's session row (held by the
   * test), which it locks after the key rows; a regeneration started meanwhile and seen waiting too.
   */
  async function regenerateWhileHeld(target: TestUser) {
    const headers = { authorization: `Bearer ${await login(app, reader)}` };
    await app.gql('{ me { id } }', { headers });
    let regeneration: Promise<string> | undefined;
    const response = await revealWhileHeld({
      held: 'SELECT 1 FROM sessions WHERE user_id = $1 FOR UPDATE',
      credentials: { headers },
      target,
      during: async () => {
        regeneration = regenerate(target, 0);
        await waitForLockWaiters(app, 2);
      },
    });
    return { response, regeneration: regeneration! };
  }

  it.each([
    { path: 'through confirmEach (a pause after the check)', race: regenerateAfterPause },
    { path: 'in one statement (a row lock held after the key rows)', race: regenerateWhileHeld },
  ])(
    "$path: a regeneration that starts once the key rows are locked waits for the views' commit, so the key shown was current when its view committed",
    async ({ race }) => {
      const target = await createUser(app, reader, { name: `Target later ${Math.random()}` });
      const { response, regeneration } = await race(target);
      expect(response.body.errors).toBeUndefined();
      expect(reveal.shown(response.body.data, target.id)).toBe(target.key);
      expect(await regeneration).not.toBe(target.key);
      const [{ viewed_first }] = await app.dataSource.query(
        `SELECT (SELECT max(id) FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND target_user_id = $2) <
                (SELECT max(id) FROM audit_events WHERE action = 'ACCESS_KEY_REGENERATED' AND target_user_id = $2) AS viewed_first`,
        [reader.id, target.id],
      );
      expect(viewed_first).toBe(true);
    },
  );
});
