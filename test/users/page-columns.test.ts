import type { PauseHooks } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;

const FULL = `query ($first: Int, $after: String) {
  users(first: $first, after: $after) {
    edges { cursor node { id name email role isActive createdAt updatedAt accessKey accessKeyInfo { hint } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

describe('a users page reads what its fields ask for, and answers the same', () => {
  let app: TestApp;
  let admin: TestUser;
  let members: TestUser[];
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ hooks });
    admin = await createOrganization(app, 'Columns Org');
    members = [];
    for (const name of ['Ann Columns', 'Ben Columns', 'Cid Columns', 'Dee Columns', 'Eli Columns']) {
      members.push(await createUser(app, admin, { name, role: Role.MEMBER }));
    }
  });
  afterAll(() => app.close());
  afterEach(() => delete hooks.beforeAuthorityCheck);

  async function viewsSince(since: number): Promise<string[]> {
    const rows = await app.dataSource.query(
      `SELECT target_user_id FROM audit_events WHERE id > $1 AND action = 'ACCESS_KEY_VIEWED' ORDER BY id`,
      [since],
    );
    return rows.map((row: { target_user_id: string }) => row.target_user_id);
  }

  async function lastEventId(): Promise<number> {
    const [{ id }] = await app.dataSource.query('SELECT coalesce(max(id), 0)::int AS id FROM audit_events');
    return id;
  }

  async function pages(query: string, first: number): Promise<any[]> {
    const edges: any[] = [];
    let after: string | null = null;
    for (;;) {
      const response: any = await app.gql(query, { key: admin.key, variables: { first, after } });
      expect(response.body.errors).toBeUndefined();
      const page = response.body.data.users;
      edges.push(...page.edges);
      if (!page.pageInfo.hasNextPage) {
        expect(page.pageInfo.endCursor).toBe(page.edges.length ? page.edges[page.edges.length - 1].cursor : null);
        return edges;
      }
      after = page.pageInfo.endCursor;
    }
  }

  it('pages through the same users with the same cursors whether a page asks for one field or all of them', async () => {
    const slim = await pages(
      'query ($first: Int, $after: String) { users(first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }',
      2,
    );
    const full = await pages(FULL, 4);
    expect(slim).toHaveLength(6);
    expect(slim.map((edge) => [edge.cursor, edge.node.id])).toEqual(full.map((edge) => [edge.cursor, edge.node.id]));
  });

  it('answers only endCursor when no edge cursor is asked for, and pages on it', async () => {
    const ids: string[] = [];
    let after: string | null = null;
    for (;;) {
      const response: any = await app.gql(
        'query ($after: String) { users(first: 4, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }',
        { key: admin.key, variables: { after } },
      );
      const page = response.body.data.users;
      ids.push(...page.edges.map((edge: any) => edge.node.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(ids.sort()).toEqual([admin.id, ...members.map((m) => m.id)].sort());
  });

  it('answers fields asked for through fragments and inline fragments', async () => {
    const response: any = await app.gql(
      `query { users(first: 10) { ...Page } }
       fragment Page on UserConnection { edges { node { id ...Dates ... on User { role isActive } } } }
       fragment Dates on User { createdAt updatedAt }`,
      { key: admin.key },
    );
    expect(response.body.errors).toBeUndefined();
    for (const { node } of response.body.data.users.edges) {
      expect(node).toEqual({
        id: expect.any(String),
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
        role: expect.stringMatching(/^(ADMIN|MEMBER)$/),
        isActive: true,
      });
      expect(Number.isNaN(Date.parse(node.createdAt))).toBe(false);
    }
  });

  it('reveals the same keys on a page asking for accessKey alone as on a page asking for everything', async () => {
    const before = app.queries.count;
    const slim: any = await app.gql('{ users(first: 10) { edges { node { id email accessKey } } } }', {
      key: admin.key,
    });
    expect(slim.body.errors).toBeUndefined();
    // The page's statement reads the key's ciphertext, not the rest of the key row nor the user's timestamps.
    const [page] = app.queries.since(before).filter((sql) => /FROM users u/.test(sql));
    expect(page).toMatch(/key_ciphertext/);
    expect(page).not.toMatch(/created_at|key_hint/);
    const full = await pages(FULL, 10);
    const keysOf = (edges: any[]) => Object.fromEntries(edges.map((edge) => [edge.node.id, edge.node.accessKey]));
    expect(keysOf(slim.body.data.users.edges)).toEqual(keysOf(full));
    for (const member of members) expect(keysOf(full)[member.id]).toBe(member.key);
    for (const edge of full) expect(edge.node.accessKeyInfo.hint).toBe(`cak_...${edge.node.accessKey.slice(-4)}`);
  });

  it('records a view for each key on the page, and none for an accessKey that @skip or @include leaves out', async () => {
    const query = `query ($hide: Boolean!) {
      users(first: 10) { edges { node { id accessKey @skip(if: $hide) ... on User @include(if: false) { accessKey } } } }
    }`;
    const hidden = await lastEventId();
    const withoutKeys: any = await app.gql(query, { key: admin.key, variables: { hide: true } });
    expect(withoutKeys.body.errors).toBeUndefined();
    expect(JSON.stringify(withoutKeys.body)).not.toMatch(KEY_PATTERN);
    expect(await viewsSince(hidden)).toEqual([]);

    const shown = await lastEventId();
    const withKeys: any = await app.gql(query, { key: admin.key, variables: { hide: false } });
    const ids = withKeys.body.data.users.edges.map((edge: any) => edge.node.id);
    expect(withKeys.body.data.users.edges.every((edge: any) => KEY_PATTERN.test(edge.node.accessKey))).toBe(true);
    expect((await viewsSince(shown)).sort()).toEqual([...ids].sort());
  });

  it('refuses every key of the page to a manager, revealing and recording none', async () => {
    const manager = await createUser(app, admin, { role: Role.MANAGER });
    const since = await lastEventId();
    const response: any = await app.gql('{ users(first: 10) { edges { node { id email accessKey } } } }', {
      key: manager.key,
    });
    const edges = response.body.data.users.edges;
    expect(edges).toHaveLength(7);
    for (const edge of edges) expect(edge.node.accessKey).toBeNull();
    expect(response.body.errors.map((error: any) => error.extensions.code)).toEqual(edges.map(() => 'FORBIDDEN'));
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await viewsSince(since)).toEqual([]);
  });

  it('withholds every key of the page from an admin demoted while the page is read: FORBIDDEN, no view', async () => {
    const other = await createUser(app, admin, { role: Role.ADMIN });
    const demotedAdmin = await createUser(app, admin, { role: Role.ADMIN });
    let demoted = false;
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== demotedAdmin.id || demoted) return;
      demoted = true;
      const demotion = await app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MANAGER) { role } }', {
        key: other.key,
        variables: { id: demotedAdmin.id },
      });
      expect(demotion.body.errors).toBeUndefined();
    };
    const since = await lastEventId();
    const response: any = await app.gql('{ users(first: 20) { edges { node { id email accessKey } } } }', {
      key: demotedAdmin.key,
    });
    expect(demoted).toBe(true);
    const edges = response.body.data.users.edges;
    expect(edges.length).toBeGreaterThan(5);
    for (const edge of edges)
      expect(edge.node).toEqual({ id: expect.any(String), email: expect.any(String), accessKey: null });
    expect(new Set(response.body.errors.map((error: any) => error.extensions.code))).toEqual(new Set(['FORBIDDEN']));
    expect(JSON.stringify(response.body)).not.toMatch(KEY_PATTERN);
    expect(await viewsSince(since)).toEqual([]);
  });

  it('after a regeneration, the request shows the new key, also where it had revealed the old one', async () => {
    const target = await createUser(app, admin);
    const response: any = await app.gql(
      `mutation ($id: ID!) {
        before: updateUser(id: $id, input: {}) { accessKey }
        regenerated: regenerateAccessKey(userId: $id) { accessKey user { accessKey } }
        after: updateUser(id: $id, input: {}) { accessKey }
      }`,
      { key: admin.key, variables: { id: target.id } },
    );
    expect(response.body.errors).toBeUndefined();
    const { before, regenerated, after } = response.body.data;
    expect(before.accessKey).toBe(target.key);
    expect(regenerated.accessKey).not.toBe(target.key);
    expect(regenerated.user.accessKey).toBe(regenerated.accessKey);
    expect(after.accessKey).toBe(regenerated.accessKey);
  });
});
