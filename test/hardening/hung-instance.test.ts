import { randomBytes } from 'node:crypto';

import type { PauseHooks } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { createTestDatabase, type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The hung instance's DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: long enough that a loaded machine does not end an act
 * before it reaches the pause, far below the healthy instance's statement timeout.
 */
const IDLE_BOUND_MS = 2000;
const DEACTIVATE = 'mutation ($id: ID!) { deactivateUser(id: $id) { id isActive } }';
const SET_ROLE = 'mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }';
const REGENERATE = 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }';

/**
 * An instance that hangs in the middle of an act (a stopped process, a paused VM, a debugger) keeps its
 * transaction open, and with it the locks of the act's authority check: the actor's user row FOR SHARE, the
 * target's FOR NO KEY UPDATE. Without a bound, every deactivation, demotion or key regeneration of those users,
 * on any instance, waits for the hung one and answers 503 at the statement timeout, for as long as the hang lasts:
 * revoking a stolen admin key would depend on a process that does not run. DB_IDLE_IN_TRANSACTION_TIMEOUT_MS
 * makes PostgreSQL end a session that sits in a transaction doing nothing for that long, which frees its locks.
 *
 * Instance A is "hung" by a test-only pause inside its act's transaction, after the check took its locks; the
 * revocation goes to instance B, whose statement timeout is far above A's idle bound, so only the idle bound can
 * let it through in time. When A resumes, its act must not take effect.
 */
describe('an instance hung in the middle of an act', () => {
  const hooks: PauseHooks = {};
  let database: { url: string; drop(): Promise<void> };
  let hung: TestApp;
  let healthy: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    database = await createTestDatabase();
    const secret = randomBytes(32);
    hung = await startTestApp({
      database: { url: database.url, secret },
      hooks,
      env: { DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: String(IDLE_BOUND_MS), LOG_LEVEL: 'warn' },
      captureLogs: true,
    });
    healthy = await startTestApp({
      database: { url: database.url, secret },
      env: { DB_STATEMENT_TIMEOUT_MS: '20000', LOG_LEVEL: 'warn' },
      captureLogs: true,
    });
    admin = await createOrganization(healthy, 'Hung Instance Org');
  }, 60_000);
  /** Resumes of acts still hung (a failed test leaves them): resumed after each test, so the apps can close. */
  const stillHung: Array<() => void> = [];
  afterEach(() => {
    delete hooks.afterAuthorityCheck;
    for (const resume of stillHung.splice(0)) resume();
  });
  afterAll(async () => {
    await hung?.close();
    await healthy?.close();
    await database?.drop();
  });

  /** Starts `request` on the hung instance and resolves once its act holds the check's locks and hangs. */
  async function hangInAct(
    actorId: string,
    request: () => Promise<GraphQLResponse>,
  ): Promise<{ resume: () => Promise<GraphQLResponse> }> {
    let hungNow!: () => void;
    const isHung = new Promise<void>((resolve) => (hungNow = resolve));
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    hooks.afterAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== actorId) return;
      hungNow();
      await resumed;
    };
    stillHung.push(resume);
    const response = request();
    await isHung;
    return {
      resume: async () => {
        resume();
        return response;
      },
    };
  }

  async function keyDigestOf(userId: string): Promise<string> {
    const [row] = await healthy.dataSource.query(
      `SELECT encode(key_digest, 'hex') AS digest FROM access_keys WHERE user_id = $1`,
      [userId],
    );
    return row.digest;
  }

  /** The hung request's act never happened: it answers an error, and nothing of it committed. */
  function expectRefused(response: GraphQLResponse): void {
    expect(response.body.data ?? null).toBeNull();
    expect(response.body.errors).toHaveLength(1);
    expect(['SERVICE_UNAVAILABLE', 'UNAUTHENTICATED']).toContain(response.body.errors![0].extensions!.code);
    expect(response.status).not.toBe(500);
  }

  /** The database's refusal: 503 with Retry-After, SERVICE_UNAVAILABLE. */
  function expectUnavailable(response: GraphQLResponse): void {
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(response.body.errors![0].extensions!.code).toBe('SERVICE_UNAVAILABLE');
  }

  it('a deactivation of the hung actor commits on another instance, and the hung act does nothing when it resumes', async () => {
    const stolen = await createUser(healthy, admin, { role: Role.ADMIN });
    const victim = await createUser(healthy, admin);
    const victimKey = await keyDigestOf(victim.id);
    const act = await hangInAct(stolen.id, () =>
      hung.gql(REGENERATE, { key: stolen.key, variables: { id: victim.id } }),
    );

    const deactivation = await healthy.gql(DEACTIVATE, { key: admin.key, variables: { id: stolen.id } });
    expect(deactivation.body.errors).toBeUndefined();
    expect(deactivation.body.data!.deactivateUser.isActive).toBe(false);

    expectRefused(await act.resume());
    expect(await keyDigestOf(victim.id)).toBe(victimKey);
    expect((await hung.gql('{ me { id } }', { key: stolen.key })).body.errors![0].extensions!.code).toBe(
      'UNAUTHENTICATED',
    );
    // The instance that hung says why its request failed; the one that revoked had nothing to complain of.
    expect(hung.logs.map((line) => JSON.parse(line).msg)).toContainEqual(
      expect.stringContaining('sat idle in a transaction past DB_IDLE_IN_TRANSACTION_TIMEOUT_MS'),
    );
    expect(healthy.logs).toEqual([]);
    // The instance goes on answering.
    expect((await hung.gql('{ me { id } }', { key: admin.key })).body.data!.me.id).toBe(admin.id);
  });

  it('a demotion and a regeneration of the hung actor commit too', async () => {
    const stolen = await createUser(healthy, admin, { role: Role.ADMIN });
    const victim = await createUser(healthy, admin);
    const act = await hangInAct(stolen.id, () =>
      hung.gql(REGENERATE, { key: stolen.key, variables: { id: victim.id } }),
    );

    const demotion = await healthy.gql(SET_ROLE, { key: admin.key, variables: { id: stolen.id, role: 'MEMBER' } });
    expect(demotion.body.errors).toBeUndefined();
    expect(demotion.body.data!.setUserRole.role).toBe('MEMBER');
    const regeneration = await healthy.gql(REGENERATE, { key: admin.key, variables: { id: stolen.id } });
    expect(regeneration.body.errors).toBeUndefined();

    expectRefused(await act.resume());
  });

  it('a regeneration of the hung act’s target commits, and the hung act does not replace it again', async () => {
    const actor = await createUser(healthy, admin, { role: Role.ADMIN });
    const victim = await createUser(healthy, admin);
    const act = await hangInAct(actor.id, () => hung.gql(REGENERATE, { key: actor.key, variables: { id: victim.id } }));

    const regeneration = await healthy.gql(REGENERATE, { key: admin.key, variables: { id: victim.id } });
    expect(regeneration.body.errors).toBeUndefined();
    const regenerated = await keyDigestOf(victim.id);

    // Its actor is still active: the only refusal is the database's, 503 with Retry-After.
    const resumed = await act.resume();
    expectRefused(resumed);
    expectUnavailable(resumed);
    expect(await keyDigestOf(victim.id)).toBe(regenerated);
  });

  it('an act whose process stops past the bound in the middle of its own code answers 503, not 500, and commits nothing', async () => {
    // A stopped process or a paused VM resumes where it stood. When that is the act's code, its next statement is
    // sent before the end of the session is read, and pg gives that statement PostgreSQL's error itself (25P03),
    // not the "not queryable" of a connection already known to be lost.
    const actor = await createUser(healthy, admin, { role: Role.ADMIN });
    const victim = await createUser(healthy, admin);
    const victimKey = await keyDigestOf(victim.id);
    hung.logs.splice(0);
    hooks.afterAuthorityCheck = async (paused) => {
      if (paused.principal.userId !== actor.id) return;
      // Half as long again as the bound with the event loop stopped: nothing reads the connection meanwhile, and
      // PostgreSQL's own timer (another process) ends the session.
      const until = Date.now() + IDLE_BOUND_MS * 1.5;
      while (Date.now() < until) {
        // the process does not run
      }
    };

    const response = await hung.gql(REGENERATE, { key: actor.key, variables: { id: victim.id } });
    expectRefused(response);
    expectUnavailable(response);
    expect(await keyDigestOf(victim.id)).toBe(victimKey);
    const messages = hung.logs.map((line) => JSON.parse(line).msg as string);
    expect(messages.filter((msg) => msg.includes('past DB_IDLE_IN_TRANSACTION_TIMEOUT_MS'))).toHaveLength(1);
    expect(messages).not.toContain('unexpected error in a resolver');
    delete hooks.afterAuthorityCheck;
    expect((await hung.gql(REGENERATE, { key: actor.key, variables: { id: victim.id } })).body.errors).toBeUndefined();
  });
});
