import type { PauseHooks } from '../../src/authorization/authority';
import type { Actor } from '../../src/request/actor';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';

const REPORT = `mutation ($key: String!, $location: String!) {
  reportLeakedAccessKey(key: $key, location: $location) { revoked user { id } }
}`;
const DEACTIVATE = 'mutation ($id: ID!) { deactivateUser(id: $id) { id isActive } }';
const SET_ROLE = 'mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }';

/**
 * reportLeakedAccessKey confirms its actor (organization row FOR KEY SHARE, actor and key owner FOR NO KEY
 * UPDATE), then revokes. The acts that can remove an admin lock the organization row FOR NO KEY UPDATE, which a
 * KEY SHARE lets through, and then queue for the users rows the report holds: had the report's revocation then
 * asked for a stronger organization lock than its check took (FOR SHARE), it would wait for them while they
 * wait for it, and PostgreSQL would end one side with a deadlock (503). The window is held open by pausing the
 * report with its check's locks held until the other admin's act is seen waiting for them.
 */
describe('reportLeakedAccessKey and an admin removing someone at the same moment', () => {
  let app: TestApp;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ hooks, env: { AUTH_FAILURE_LIMIT: '10000' } });
  });
  afterEach(() => {
    delete hooks.afterAuthorityCheck;
  });
  afterAll(() => app.close());

  interface World {
    reporter: TestUser;
    other: TestUser;
    leaked: TestUser;
  }
  const acts: Array<[string, (w: World) => Promise<GraphQLResponse>, (response: GraphQLResponse) => void]> = [
    [
      "another admin deactivates the leaked key's user",
      (w) => app.gql(DEACTIVATE, { key: w.other.key, variables: { id: w.leaked.id } }),
      (response) =>
        expect(response.body.data).toEqual({ deactivateUser: expect.objectContaining({ isActive: false }) }),
    ],
    [
      'another admin demotes the reporter',
      (w) => app.gql(SET_ROLE, { key: w.other.key, variables: { id: w.reporter.id, role: 'MEMBER' } }),
      (response) => expect(response.body.data).toEqual({ setUserRole: expect.objectContaining({ role: 'MEMBER' }) }),
    ],
  ];

  it.each(acts)('%s: both commit, one after the other, no deadlock', async (_label, act, committed) => {
    const reporter = await createOrganization(app, 'Leak Lock Org');
    const other = await createUser(app, reporter, { role: Role.ADMIN });
    const leaked = await createUser(app, reporter);
    let acting: Promise<GraphQLResponse> | null = null;
    hooks.afterAuthorityCheck = async (actor: Actor) => {
      if (actor.principal.userId !== reporter.id || acting) return;
      acting = act({ reporter, other, leaked });
      // The other admin's act has its organization lock and waits for a users row the report holds.
      await waitForLockWaiters(app, 1);
    };

    const report = await app.gql(REPORT, { key: reporter.key, variables: { key: leaked.key, location: 'a chat' } });
    const removal = await acting!;

    expect(report.status).toBe(200);
    expect(report.body).toEqual({ data: { reportLeakedAccessKey: { revoked: true, user: { id: leaked.id } } } });
    expect(removal.status).toBe(200);
    expect(removal.body.errors).toBeUndefined();
    committed(removal);
    // The report committed first: the leaked key was replaced before the other act changed anyone.
    expect((await app.gql('{ me { id } }', { key: leaked.key })).status).toBe(401);
  });
});
