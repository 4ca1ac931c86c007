import { SYSTEM_ACTOR } from '../../src/audit/audit.service';
import { Role } from '../../src/users/user.entity';
import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const QUERY = `query ($first: Int) { users(first: $first) { edges { node { id email organization { id name } accessKey } } } }`;

describe('no N+1: the statements of a users page do not grow with its size', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Big Org');
    await app.dataSource.transaction(async (manager) => {
      for (let i = 0; i < 520; i++) {
        await app.services.users.insert(manager, {
          organizationId: admin.organizationId,
          email: `bulk-${i}@big.example`,
          name: `Bulk User ${String(i).padStart(3, '0')}`,
          role: Role.MEMBER,
          actor: SYSTEM_ACTOR,
        });
      }
    });
    // Warm the key into the cache and write its use now, so neither shows up in the counts below.
    await app.gql('{ me { id } }', { key: admin.key });
    await app.services.accessKeys.flushUse();
  }, 120_000);
  afterAll(() => app.close());

  async function statementsFor(first: number): Promise<string[]> {
    const before = app.queries.count;
    const response = await app.gql(QUERY, { key: admin.key, variables: { first } });
    expect(response.body.errors).toBeUndefined();
    const edges = response.body.data!.users.edges;
    expect(edges).toHaveLength(first);
    for (const { node } of edges) {
      expect(node.accessKey).toMatch(/^cak_/);
      expect(node.organization.id).toBe(admin.organizationId);
    }
    return app.queries.since(before);
  }

  it('users(first: 10) and users(first: 500) with accessKey and organization run the same statements, at most 3', async () => {
    const small = await statementsFor(10);
    const large = await statementsFor(500);
    expect(large.length).toBe(small.length);
    // The page and its organizations (2), then the views: one statement that confirms the actor's authority
    // under its locks and inserts every view (Authority.insertIfConfirmed, its own transaction).
    expect(large.length).toBeLessThanOrEqual(3);
  });
});
