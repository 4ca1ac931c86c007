import type { Client } from 'pg';

import { AUTHORITY_LOCK_SPACE } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters, waitingViewsStatements } from '../helpers/locks';
import {
  type GraphQLResponse,
  lastAuditEventId,
  startAppWithSecondConnection,
  type TestApp,
} from '../helpers/test-app';
import { until } from '../helpers/until';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;

/**
 * Review of the page-rows merge (2b8b5bd): the slim page's rows read as arrays and mapped by position, the
 * non-slim page (accessKey with other fields), the page's `read accessKey` grants (GrantedChecks.canEach) reused
 * by the views' writer, and the views' arrays sent as literals. Every answer is checked against the database,
 * every revealed key against its view (actor, organization, target, request id).
 */
describe('users page rows, grants and view literals: attacks', () => {
  let app: TestApp;
  let other: Client;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ app, other, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
  });
  afterAll(() => close());

  async function viewsSince(
    after: string,
  ): Promise<Array<{ actor_user_id: string; target_user_id: string; organization_id: string; request_id: string }>> {
    return app.dataSource.query(
      `SELECT actor_user_id, target_user_id, organization_id, request_id FROM audit_events
        WHERE action = 'ACCESS_KEY_VIEWED' AND id > $1 ORDER BY id`,
      [after],
    );
  }

  /** The users of an organization as the database holds them, in the page's order (name, then id). */
  async function usersOf(
    organizationId: string,
  ): Promise<
    Array<{ id: string; organization_id: string; email: string; name: string; role: string; created_at: Date }>
  > {
    return app.dataSource.query(
      `SELECT id, organization_id, email, name, role, created_at FROM users WHERE organization_id = $1
        ORDER BY name, id`,
      [organizationId],
    );
  }

  /**
   * `query` from each of `readers`, the views of those of the blocker's organization queued as one batch of the
   * views' writer behind `blocker`'s page (whose views statement waits for the blocker's users row, held here;
   * the writer commits one batch at a time per organization), those of other organizations answered meanwhile;
   * `during` runs while they wait. Returns the readers' answers, in order, once the blocker's page has answered.
   */
  async function pagesInOneBatch(params: {
    blocker: TestUser;
    readers: TestUser[];
    query: string;
    during?: () => Promise<void>;
  }): Promise<GraphQLResponse[]> {
    const { blocker, readers, query } = params;
    for (const user of [blocker, ...readers]) await app.gql('{ me { id } }', { key: user.key });
    const writer = app.services.audit.keyViews;
    let blocked: Promise<GraphQLResponse> | undefined;
    const pages: Array<Promise<GraphQLResponse>> = [];
    await other.query('BEGIN');
    try {
      await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [blocker.id]);
      blocked = app.gql(query, { key: blocker.key });
      await waitForLockWaiters(app, 1);
      for (const reader of readers) pages.push(app.gql(query, { key: reader.key }));
      const held = readers.filter((reader) => reader.organizationId === blocker.organizationId);
      await until(() => writer.waiting >= held.length);
      // The other organizations' pages are answered while the blocker's organization waits.
      await Promise.all(pages.filter((_, i) => !held.includes(readers[i])));
      await params.during?.();
    } finally {
      await other.query('ROLLBACK');
    }
    expect((await blocked)!.body.errors).toBeUndefined();
    return Promise.all(pages);
  }

  it('a page asking for accessKey with role and createdAt reads each key with its row: no second key read', async () => {
    const admin = await createOrganization(app, 'Wide Page Org', TEST_PASSWORD);
    const members = [await createUser(app, admin), await createUser(app, admin, { role: Role.MANAGER })];
    await app.gql('{ me { id } }', { key: admin.key });
    const after = await lastAuditEventId(app);
    const before = app.queries.count;
    const response = await app.gql(
      '{ users(first: 50) { edges { node { id email name role createdAt accessKey } } } }',
      { key: admin.key },
    );
    const statements = app.queries.since(before);
    expect(response.body.errors).toBeUndefined();
    const keys = new Map([admin, ...members].map((user) => [user.id, user.key]));
    const rows = await usersOf(admin.organizationId);
    expect(response.body.data!.users.edges.map(({ node }: any) => node)).toEqual(
      rows.map((row) => ({
        id: row.id,
        email: row.email,
        name: row.name,
        role: row.role,
        createdAt: row.created_at.toISOString(),
        accessKey: keys.get(row.id),
      })),
    );
    // The page's statement joins the key's ciphertext: the reveal decrypts that, it does not read the keys again.
    expect(statements.filter((sql) => /FROM users u/.test(sql))).toHaveLength(1);
    expect(statements.filter((sql) => /FROM access_keys k WHERE/.test(sql))).toEqual([]);
    const views = await viewsSince(after);
    expect(views.map((view) => view.target_user_id).sort()).toEqual([...keys.keys()].sort());
  });

  it('slim pages, deep cursors and first: 0 answer what the database holds, column for column', async () => {
    const admin = await createOrganization(app, 'Columns Check Org', TEST_PASSWORD);
    // Names and emails that would tell a swapped column: every name differs from every email.
    const created: TestUser[] = [admin];
    for (const name of ['Ana Q', 'Bo Q', 'Cy Q', 'Di Q', 'Ed Q', 'Fay Q', 'Gus Q']) {
      created.push(await createUser(app, admin, { name }));
    }
    await app.dataSource.query(`DELETE FROM access_keys WHERE user_id = $1`, [created[3].id]);
    const keys = new Map(created.map((user, i) => [user.id, i === 3 ? null : user.key]));
    const rows = await usersOf(admin.organizationId);
    const expected = rows.map((row) => ({
      id: row.id,
      email: row.email,
      name: row.name,
      organization: { id: row.organization_id },
      accessKey: keys.get(row.id),
    }));

    const after = await lastAuditEventId(app);
    const seen: unknown[] = [];
    let cursor: string | null = null;
    let requests = 0;
    for (;;) {
      const response: GraphQLResponse = await app.gql(
        `query ($after: String) { users(first: 3, after: $after) {
           edges { node { id email name organization { id } accessKey } } pageInfo { hasNextPage endCursor } } }`,
        { key: admin.key, variables: { after: cursor } },
      );
      requests++;
      expect(response.body.errors).toBeUndefined();
      const page = response.body.data!.users;
      seen.push(...page.edges.map(({ node }: any) => node));
      if (!page.pageInfo.hasNextPage) break;
      cursor = page.pageInfo.endCursor;
    }
    expect(requests).toBe(3);
    expect(seen).toEqual(expected);
    const views = await viewsSince(after);
    expect(views.map((view) => view.target_user_id).sort()).toEqual(
      [...keys]
        .filter(([, key]) => key !== null)
        .map(([id]) => id)
        .sort(),
    );
    for (const view of views) {
      expect(view).toMatchObject({ actor_user_id: admin.id, organization_id: admin.organizationId });
    }

    const emptyAfter = await lastAuditEventId(app);
    const empty = await app.gql(
      '{ users(first: 0) { edges { node { id email accessKey } } pageInfo { hasNextPage endCursor } } }',
      { key: admin.key },
    );
    expect(empty.body.errors).toBeUndefined();
    expect(empty.body.data!.users.edges).toEqual([]);
    expect(empty.body.data!.users.pageInfo.endCursor).toBeNull();
    expect(await viewsSince(emptyAfter)).toEqual([]);
  });

  it('first: 0 tells whether any user follows (Relay: more edges after the cursor than first), revealing no key', async () => {
    const admin = await createOrganization(app, 'First Zero Org', TEST_PASSWORD);
    await createUser(app, admin, { name: 'Zed Z' });
    const QUERY = `query ($after: String) { users(first: 0, after: $after) {
      edges { node { id accessKey } } pageInfo { hasNextPage endCursor } totalCount } }`;

    const since = await lastAuditEventId(app);
    const head = await app.gql(QUERY, { key: admin.key, variables: { after: null } });
    expect(head.body.errors).toBeUndefined();
    expect(head.body.data!.users).toEqual({
      edges: [],
      pageInfo: { hasNextPage: true, endCursor: null },
      totalCount: 2,
    });
    expect(await viewsSince(since)).toEqual([]);

    const all = await app.gql('{ users(first: 100) { pageInfo { endCursor } } }', { key: admin.key });
    const last = all.body.data!.users.pageInfo.endCursor;
    const tail = await app.gql(QUERY, { key: admin.key, variables: { after: last } });
    expect(tail.body.errors).toBeUndefined();
    expect(tail.body.data!.users.pageInfo.hasNextPage).toBe(false);
    expect(tail.body.data!.users.edges).toEqual([]);
  });

  it.each([
    { reader: 'a manager', make: (app: TestApp, admin: TestUser) => createUser(app, admin, { role: Role.MANAGER }) },
    { reader: 'a member', make: (app: TestApp, admin: TestUser) => createUser(app, admin, { role: Role.MEMBER }) },
    { reader: "another organization's admin", make: (app: TestApp) => createOrganization(app, 'Outsider Org') },
  ])("$reader, on every page shape, gets no key of the organization's and records no view of one", async ({ make }) => {
    const admin = await createOrganization(app, 'Guarded Org', TEST_PASSWORD);
    const member = await createUser(app, admin);
    const reader = await make(app, admin);
    const after = await lastAuditEventId(app);
    for (const query of [
      '{ users(first: 100) { edges { node { id email accessKey } } } }',
      '{ users(first: 100) { edges { node { id name role createdAt accessKey } } } }',
      '{ users(first: 100) { edges { node { id accessKey accessKeyInfo { hint } } } } }',
    ]) {
      const response = await app.gql(`query ($id: ID!) { ${query.slice(1, -1)} user(id: $id) { id accessKey } }`, {
        key: reader.key,
        variables: { id: member.id },
      });
      const text = JSON.stringify(response.body);
      expect(text).not.toContain(member.key);
      expect(text).not.toContain(admin.key);
      const outsider = reader.organizationId !== admin.organizationId;
      for (const { node } of response.body.data?.users?.edges ?? []) {
        // Another organization's admin sees their own organization only (and there, their own key).
        if (outsider) expect(node).toMatchObject({ id: reader.id, accessKey: reader.key });
        else expect(node.accessKey).toBeNull();
      }
      // A manager may read the member's profile, not its key; the others do not see the member at all.
      expect(response.body.data?.user?.accessKey ?? null).toBeNull();
      expect(response.body.errors?.length).toBeGreaterThan(0);
    }
    const views = await viewsSince(after);
    expect(views.filter((view) => view.organization_id === admin.organizationId)).toEqual([]);
    expect(views.filter((view) => view.target_user_id !== reader.id)).toEqual([]);
  });

  it("two admins' pages of one organization in one views batch, one demoted meanwhile: only the other's keys", async () => {
    const admin = await createOrganization(app, 'Shared Admins', TEST_PASSWORD);
    const blocker = await createUser(app, admin, { role: Role.ADMIN });
    const demoted = await createUser(app, admin, { role: Role.ADMIN });
    const targets = [await createUser(app, admin), await createUser(app, admin)];
    const outsider = await createOrganization(app, 'Batch Neighbour', TEST_PASSWORD);
    const after = await lastAuditEventId(app);
    const [refused, shown, neighbour] = await pagesInOneBatch({
      blocker,
      readers: [demoted, admin, outsider],
      query: '{ users(first: 100) { edges { node { id email accessKey } } } }',
      during: async () => {
        const demotion = await app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MANAGER) { id } }', {
          key: admin.key,
          variables: { id: demoted.id },
        });
        expect(demotion.body.errors).toBeUndefined();
      },
    });

    expect(JSON.stringify(refused.body)).not.toMatch(KEY_PATTERN);
    expect(refused.body.errors?.length).toBeGreaterThan(0);
    const views = await viewsSince(after);
    expect(views.filter((view) => view.actor_user_id === demoted.id)).toEqual([]);

    const organization = [admin, blocker, demoted, ...targets];
    for (const [reader, response, expected] of [
      [admin, shown, organization],
      [outsider, neighbour, [outsider]],
    ] as Array<[TestUser, GraphQLResponse, TestUser[]]>) {
      expect(response.body.errors).toBeUndefined();
      const keys = new Map(expected.map((user) => [user.id, user.key]));
      const edges = response.body.data!.users.edges;
      expect(edges.map(({ node }: any) => node.id).sort()).toEqual([...keys.keys()].sort());
      for (const { node } of edges) expect(node.accessKey).toBe(keys.get(node.id));
      const own = views.filter((view) => view.actor_user_id === reader.id);
      expect(own.map((view) => view.target_user_id).sort()).toEqual([...keys.keys()].sort());
      for (const view of own) {
        expect(view).toMatchObject({
          organization_id: reader.organizationId,
          request_id: response.headers.get('x-request-id'),
        });
      }
    }
  });

  it.each([
    { shape: 'slim', fields: 'id email accessKey' },
    { shape: 'with role', fields: 'id role accessKey' },
  ])(
    'a $shape page whose target is regenerated while its views wait shows the new key, with its view',
    async ({ fields }) => {
      const reader = await createOrganization(app, 'Regenerated Rows', TEST_PASSWORD);
      const regenerator = await createUser(app, reader, { role: Role.ADMIN });
      const target = await createUser(app, reader);
      await app.gql('{ me { id } }', { key: reader.key });
      const after = await lastAuditEventId(app);
      let page: Promise<GraphQLResponse> | undefined;
      let issued: string | undefined;
      await other.query('BEGIN');
      try {
        // The reader's authority lock, the first lock the page's views statement takes (before the keys'
        // authority locks, which a regeneration waits for): it waits here, the page's ciphertexts already read.
        // Not the reader's users row: the statement takes it after the keys' locks, so the regeneration would
        // wait for the page and go on only once a statement timeout ended one of them.
        await other.query(`SELECT pg_advisory_xact_lock(${AUTHORITY_LOCK_SPACE}, hashtext($1::text))`, [reader.id]);
        page = app.gql(`{ users(first: 100) { edges { node { ${fields} } } } }`, { key: reader.key });
        await waitForLockWaiters(app, 1);
        const waiting = await waitingViewsStatements(app);
        expect(waiting).toHaveLength(1);
        const regeneration = await app.gql(
          'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 0) { accessKey } }',
          { key: regenerator.key, variables: { id: target.id } },
        );
        expect(regeneration.body.errors).toBeUndefined();
        issued = regeneration.body.data!.regenerateAccessKey.accessKey;
        // The regeneration committed while the page's views statement still waits, not after a timeout ended it.
        expect(await waitingViewsStatements(app)).toEqual(waiting);
      } finally {
        await other.query('ROLLBACK');
      }
      const answer = (await page)!;
      expect(answer.body.errors).toBeUndefined();
      const edges = answer.body.data!.users.edges;
      expect(edges.find(({ node }: any) => node.id === target.id).node.accessKey).toBe(issued);
      expect(edges.find(({ node }: any) => node.id === regenerator.id).node.accessKey).toBe(regenerator.key);
      expect(JSON.stringify(answer.body)).not.toContain(target.key);
      const views = (await viewsSince(after)).filter((view) => view.actor_user_id === reader.id);
      expect(views.map((view) => view.target_user_id).sort()).toEqual([reader.id, regenerator.id, target.id].sort());
      for (const view of views) expect(view.request_id).toBe(answer.headers.get('x-request-id'));
    },
  );
  it("two admins' full pages (100 rows each) in one views batch, another organization's beside it: every view's target, organization and actor", async () => {
    const first = await createOrganization(app, 'Hundred A');
    const blocker = await createUser(app, first, { role: Role.ADMIN });
    const admins = [
      first,
      await createUser(app, first, { role: Role.ADMIN }),
      await createOrganization(app, 'Hundred B'),
    ];
    const keys = new Map<string, string>([[blocker.id, blocker.key]]);
    for (const admin of admins) keys.set(admin.id, admin.key);
    for (const admin of [first, admins[2]]) {
      for (let i = 0; i < 100; i++) {
        const user = await createUser(app, admin, { name: `Hundred ${i}` });
        keys.set(user.id, user.key);
      }
    }
    const after = await lastAuditEventId(app);
    const answers = await pagesInOneBatch({
      blocker,
      readers: admins,
      query: '{ users(first: 100) { edges { node { id email name accessKey } } } }',
    });
    const views = await app.dataSource.query(
      `SELECT e.actor_user_id, e.target_user_id, e.organization_id, e.request_id, u.organization_id AS target_organization
         FROM audit_events e JOIN users u ON u.id = e.target_user_id
        WHERE e.action = 'ACCESS_KEY_VIEWED' AND e.id > $1 AND e.actor_user_id <> $2 ORDER BY e.id`,
      [after, blocker.id],
    );
    expect(views).toHaveLength(300);
    admins.forEach((admin, i) => {
      const response = answers[i];
      expect(response.body.errors).toBeUndefined();
      const edges = response.body.data!.users.edges;
      expect(edges).toHaveLength(100);
      const rows = new Map<string, { email: string; name: string }>();
      for (const { node } of edges) {
        expect(node.accessKey).toBe(keys.get(node.id));
        rows.set(node.id, { email: node.email, name: node.name });
      }
      const own = views.filter((view: any) => view.actor_user_id === admin.id);
      expect(own.map((view: any) => view.target_user_id).sort()).toEqual([...rows.keys()].sort());
      for (const view of own) {
        expect(view).toMatchObject({
          organization_id: admin.organizationId,
          target_organization: admin.organizationId,
          request_id: response.headers.get('x-request-id'),
        });
      }
    });
    // The answers' columns are the database's, row for row.
    const answered = answers.flatMap((response) => response.body.data!.users.edges.map(({ node }: any) => node));
    const stored = await app.dataSource.query('SELECT id, email, name FROM users WHERE id = ANY($1)', [
      answered.map((node: any) => node.id),
    ]);
    const byId = new Map(stored.map((row: any) => [row.id, row]));
    for (const node of answered) expect({ id: node.id, email: node.email, name: node.name }).toEqual(byId.get(node.id));
  });
});
