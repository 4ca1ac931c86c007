import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const PROFILE = `query ($id: ID!) { user(id: $id) { id email organization { id } accessKey } }`;
const USER_READ = /FROM users u LEFT JOIN access_keys k/;

/**
 * `user(id)` reads of concurrent requests share one statement (a profile with its key is the admin
 * console's hottest read), while each request still gets only what its own caller may see.
 */
describe('concurrent profile reads share statements, never answers', () => {
  let app: TestApp;
  let adminA: TestUser;
  let adminB: TestUser;
  let memberA: TestUser;
  let managerA: TestUser;
  let targets: TestUser[];

  beforeAll(async () => {
    app = await startTestApp();
    adminA = await createOrganization(app, 'Shared Reads A');
    adminB = await createOrganization(app, 'Shared Reads B');
    memberA = await createUser(app, adminA, { role: Role.MEMBER });
    managerA = await createUser(app, adminA, { role: Role.MANAGER });
    targets = [];
    for (let i = 0; i < 5; i++) targets.push(await createUser(app, adminA));
    // Warm every caller's key, so the counts below are the reads alone.
    for (const caller of [adminA, adminB, memberA, managerA]) await app.gql('{ me { id } }', { key: caller.key });
    // And open the client's keep-alive connections, as a busy integration has them: a burst of new
    // connections arrives one handshake at a time, which is not what is measured here.
    await Promise.all(Array.from({ length: 40 }, () => app.gql('{ __typename }')));
  }, 120_000);
  afterAll(() => app.close());

  async function burst(requests: Array<{ caller: TestUser; target: TestUser }>) {
    const before = app.queries.count;
    const responses = await Promise.all(
      requests.map(({ caller, target }) => app.gql(PROFILE, { key: caller.key, variables: { id: target.id } })),
    );
    return { responses, reads: app.queries.since(before).filter((sql) => USER_READ.test(sql)) };
  }

  it('40 admins reading profiles at once cause fewer reads than requests, each with the right key', async () => {
    const requests = Array.from({ length: 40 }, (_, i) => ({ caller: adminA, target: targets[i % targets.length] }));
    const { responses, reads } = await burst(requests);
    responses.forEach((response, i) => {
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data!.user).toEqual({
        id: requests[i].target.id,
        email: requests[i].target.email,
        organization: { id: adminA.organizationId },
        accessKey: requests[i].target.key,
      });
    });
    expect(reads.length).toBeGreaterThanOrEqual(1);
    expect(reads.length).toBeLessThan(requests.length);
  });

  it('in one shared read, each caller is still held to its own abilities', async () => {
    const requests = [
      ...Array.from({ length: 8 }, () => ({ caller: adminB, target: targets[0] })),
      ...Array.from({ length: 8 }, () => ({ caller: memberA, target: targets[1] })),
      ...Array.from({ length: 8 }, () => ({ caller: memberA, target: memberA })),
      ...Array.from({ length: 8 }, () => ({ caller: managerA, target: targets[2] })),
      ...Array.from({ length: 8 }, () => ({ caller: adminA, target: targets[2] })),
    ];
    const { responses, reads } = await burst(requests);
    expect(reads.length).toBeLessThan(requests.length);
    responses.forEach((response, i) => {
      const { caller, target } = requests[i];
      const body = response.body;
      if (caller === adminB || (caller === memberA && target !== memberA)) {
        // Another organization's user, or a colleague a member may not see: not there at all.
        expect(body.data?.user ?? null).toBeNull();
        expect(body.errors?.map((e) => e.extensions?.code)).toEqual(['NOT_FOUND']);
      } else if (caller === adminA) {
        expect(body.errors).toBeUndefined();
        expect(body.data!.user.accessKey).toBe(target.key);
      } else {
        // Visible, but the key is for admins only: FORBIDDEN on that field, the rest of the answer stays.
        expect(body.data!.user).toMatchObject({ id: target.id, email: target.email, accessKey: null });
        expect(body.errors?.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
      }
      expect(JSON.stringify(body)).not.toContain(targets[0].key);
      if (caller !== adminA) expect(JSON.stringify(body)).not.toMatch(/cak_/);
    });
  });

  it('a malformed id in a burst fails alone', async () => {
    const before = app.queries.count;
    const [bad, good] = await Promise.all([
      app.gql(PROFILE, { key: adminA.key, variables: { id: 'not-a-uuid' } }),
      app.gql(PROFILE, { key: adminA.key, variables: { id: targets[3].id } }),
    ]);
    expect(bad.body.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(good.body.data!.user.accessKey).toBe(targets[3].key);
    expect(app.queries.since(before).filter((sql) => USER_READ.test(sql))).toHaveLength(1);
  });
});
