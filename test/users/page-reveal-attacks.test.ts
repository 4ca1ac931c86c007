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

/**
 * Review of the users page's cheaper reveal (GrantedChecks, revealAll, the views' "who" statement): the same
 * user asked for several times in one request, readers who may not see keys, users without keys, and two
 * requests' views committed in one group-commit batch. Each reveal must be audited once, with its own request's
 * actor and request id, before it is returned.
 */
describe('users page reveal: attacks on the per-request caches and the shared views statement', () => {
  let app: TestApp;
  let other: Client;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ app, other, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
  });
  afterAll(() => close());

  async function viewsSince(after: string): Promise<
    Array<{
      actor_user_id: string;
      actor_kind: string;
      target_user_id: string;
      organization_id: string;
      request_id: string;
      ip: string;
    }>
  > {
    return app.dataSource.query(
      `SELECT actor_user_id, actor_kind, target_user_id, organization_id, request_id, ip FROM audit_events
        WHERE action = 'ACCESS_KEY_VIEWED' AND id > $1 ORDER BY id`,
      [after],
    );
  }

  it('the same users through aliases, user(id), fragments and @include: one key each, one view each', async () => {
    const admin = await createOrganization(app, 'Alias Org', TEST_PASSWORD);
    const members = [await createUser(app, admin), await createUser(app, admin)];
    const after = await lastAuditEventId(app);
    const response = await app.gql(
      `query ($id: ID!, $yes: Boolean!) {
         a: users(first: 50) { edges { node { id accessKey } } }
         b: users(first: 50) { edges { node { id ...K  email accessKey @include(if: $yes) k2: accessKey } } }
         c: user(id: $id) { id accessKey ...K }
         d: user(id: $id) { accessKey @skip(if: $yes) }
         me { id accessKey }
       }
       fragment K on User { accessKey }`,
      { key: admin.key, variables: { id: members[0].id, yes: true } },
    );
    expect(response.body.errors).toBeUndefined();
    const data = response.body.data!;
    const expected = new Map([...members, admin].map((user) => [user.id, user.key]));
    for (const alias of ['a', 'b']) {
      for (const { node } of data[alias].edges) {
        expect(node.accessKey).toBe(expected.get(node.id));
        if (alias === 'b') expect(node.k2).toBe(expected.get(node.id));
      }
    }
    expect(data.c.accessKey).toBe(members[0].key);
    expect(data.d).toEqual({});
    expect(data.me.accessKey).toBe(admin.key);
    const views = await viewsSince(after);
    const requestId = response.headers.get('x-request-id');
    expect(views.map((view) => view.target_user_id).sort()).toEqual([...expected.keys()].sort());
    for (const view of views) {
      expect(view).toMatchObject({
        actor_user_id: admin.id,
        organization_id: admin.organizationId,
        request_id: requestId,
      });
    }
  });

  it.each([Role.MANAGER, Role.MEMBER])(
    'a %s gets FORBIDDEN on each accessKey, the rest of the page, no view',
    async (role) => {
      const admin = await createOrganization(app, `Refused ${role}`, TEST_PASSWORD);
      const reader = await createUser(app, admin, { role });
      const after = await lastAuditEventId(app);
      const response = await app.gql(
        `{ users(first: 50) { edges { node { id email accessKey } } } me { id accessKey } }`,
        { key: reader.key },
      );
      const data = response.body.data!;
      const forbidden = (response.body.errors ?? []).filter((error) => error.extensions?.code === 'FORBIDDEN');
      // Whatever rows the role may list: each one's email is there, no key is.
      expect(data.users.edges.length).toBeGreaterThan(0);
      for (const { node } of data.users.edges) {
        expect(node.email).toEqual(expect.any(String));
        expect(node.accessKey).toBeNull();
      }
      expect(forbidden.length).toBeGreaterThanOrEqual(data.users.edges.length);
      expect(await viewsSince(after)).toEqual([]);
    },
  );

  it('users without a key and deactivated users: null without a view, or a key with exactly one', async () => {
    const admin = await createOrganization(app, 'Mixed Org', TEST_PASSWORD);
    const keyless = await createUser(app, admin);
    const deactivated = await createUser(app, admin);
    const keyed = await createUser(app, admin);
    await app.dataSource.query(`DELETE FROM access_keys WHERE user_id = $1`, [keyless.id]);
    const off = await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', {
      key: admin.key,
      variables: { id: deactivated.id },
    });
    const after = await lastAuditEventId(app);
    const response = await app.gql(`{ users(first: 50) { edges { node { id accessKey } } } }`, { key: admin.key });
    expect(response.body.errors).toBeUndefined();
    const shown = new Map<string, string | null>(
      response.body.data!.users.edges.map(({ node }: any) => [node.id, node.accessKey]),
    );
    expect(shown.get(keyless.id)).toBeNull();
    expect(shown.get(keyed.id)).toBe(keyed.key);
    if (!off.body.errors && shown.has(deactivated.id))
      expect([null, deactivated.key]).toContain(shown.get(deactivated.id));
    const views = await viewsSince(after);
    const withKey = [...shown].filter(([, key]) => key !== null).map(([id]) => id);
    expect(views.map((view) => view.target_user_id).sort()).toEqual(withKey.sort());
  });

  it("two admins' pages committed in one batch: each view names its own request's actor and request id", async () => {
    const orgA = await createOrganization(app, 'Batch A', TEST_PASSWORD);
    const orgB = await createOrganization(app, 'Batch B', TEST_PASSWORD);
    const blocker = await createUser(app, orgA, { role: Role.ADMIN });
    const secondA = await createUser(app, orgA, { role: Role.ADMIN });
    const targetsA = [await createUser(app, orgA), await createUser(app, orgA)];
    const targetsB = [await createUser(app, orgB)];
    for (const user of [blocker, orgA, secondA, orgB]) await app.gql('{ me { id } }', { key: user.key });
    const after = await lastAuditEventId(app);
    const writer = app.services.audit.keyViews;

    // The blocker's views statement waits for its users row: meanwhile the two pages of its organization queue
    // up as one batch (one batch at a time per organization), and organization B's page is answered.
    let blocked: Promise<GraphQLResponse> | undefined;
    const pages: Array<Promise<GraphQLResponse>> = [];
    await other.query('BEGIN');
    try {
      await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [blocker.id]);
      blocked = app.gql(`{ users(first: 50) { edges { node { id accessKey } } } }`, { key: blocker.key });
      await waitForLockWaiters(app, 1);
      for (const reader of [orgA, orgB, secondA]) {
        pages.push(app.gql(`{ users(first: 50) { edges { node { id accessKey } } } }`, { key: reader.key }));
      }
      await until(() => writer.waiting >= 2);
      await pages[1];
    } finally {
      await other.query('ROLLBACK');
    }
    const [a, b, a2] = await Promise.all(pages);
    expect((await blocked)!.body.errors).toBeUndefined();
    const views = await viewsSince(after);
    for (const [reader, response, expectedTargets] of [
      [orgA, a, [orgA, blocker, secondA, ...targetsA]],
      [orgB, b, [orgB, ...targetsB]],
      [secondA, a2, [orgA, blocker, secondA, ...targetsA]],
    ] as Array<[TestUser, GraphQLResponse, TestUser[]]>) {
      expect(response.body.errors).toBeUndefined();
      const requestId = response.headers.get('x-request-id');
      const own = views.filter((view) => view.request_id === requestId);
      expect(own.map((view) => view.target_user_id).sort()).toEqual(expectedTargets.map((user) => user.id).sort());
      for (const view of own) {
        expect(view).toMatchObject({
          actor_user_id: reader.id,
          actor_kind: 'ACCESS_KEY',
          organization_id: reader.organizationId,
        });
      }
      for (const { node } of response.body.data!.users.edges) {
        expect(node.accessKey).toBe(expectedTargets.find((user) => user.id === node.id)!.key);
      }
    }
    expect(views.filter((view) => view.actor_user_id !== blocker.id)).toHaveLength(5 + 2 + 5);
  });
  it("a page whose views' connection is terminated: each field retries, shows its key with exactly one view", async () => {
    const admin = await createOrganization(app, 'Terminated Org', TEST_PASSWORD);
    const targets = [await createUser(app, admin), await createUser(app, admin)];
    await app.gql('{ me { id } }', { key: admin.key });
    const after = await lastAuditEventId(app);
    let response: Promise<GraphQLResponse> | undefined;
    await other.query('BEGIN');
    try {
      await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [admin.id]);
      response = app.gql(
        `{ a: users(first: 50) { edges { node { id accessKey } } } b: users(first: 50) { edges { node { id accessKey } } } }`,
        { key: admin.key },
      );
      await waitForLockWaiters(app, 1);
      const terminated = await app.dataSource.query(
        `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      );
      expect(terminated).toEqual([{ done: true }]);
    } finally {
      await other.query('ROLLBACK');
    }
    const answer = (await response)!;
    const views = await viewsSince(after);
    const keys = new Map([admin, ...targets].map((user) => [user.id, user.key]));
    const shown: Array<[string, string | null]> = [];
    for (const alias of ['a', 'b']) {
      for (const { node } of answer.body.data?.[alias]?.edges ?? []) shown.push([node.id, node.accessKey]);
    }
    // Either the field's error (no view), or the key with its one view: never a key without a view, never two.
    for (const [id, key] of shown) if (key !== null) expect(key).toBe(keys.get(id));
    const revealedIds = [...new Set(shown.filter(([, key]) => key !== null).map(([id]) => id))].sort();
    expect(views.map((view) => view.target_user_id).sort()).toEqual(revealedIds);
    expect(revealedIds).toEqual([...keys.keys()].sort());
  });
  describe.each([
    { change: 'a demotion', mutation: 'mutation ($id: ID!) { setUserRole(id: $id, role: MEMBER) { id } }' },
    { change: 'a deactivation', mutation: 'mutation ($id: ID!) { deactivateUser(id: $id) { id } }' },
    {
      change: "a regeneration of the reader's own key",
      mutation: 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }',
    },
  ])('$change committed while the page waits to commit its views', ({ mutation }) => {
    it('no key anywhere in the answer and no view by the reader: the page is refused', async () => {
      const reader = await createOrganization(app, 'In flight', TEST_PASSWORD);
      const blocker = await createUser(app, reader, { role: Role.ADMIN });
      const changer = await createUser(app, reader, { role: Role.ADMIN });
      const target = await createUser(app, reader);
      for (const user of [blocker, reader, changer]) await app.gql('{ me { id } }', { key: user.key });
      const writer = app.services.audit.keyViews;
      const after = await lastAuditEventId(app);
      let blocked: Promise<GraphQLResponse> | undefined;
      let page: Promise<GraphQLResponse> | undefined;
      await other.query('BEGIN');
      try {
        // The blocker's authority lock, the first its views statement takes, before the keys' authority locks
        // (which a regeneration of the reader's key waits for): not its users row, taken after them, which kept the
        // regeneration waiting until a statement timeout ended one of the two.
        await other.query(`SELECT pg_advisory_xact_lock(${AUTHORITY_LOCK_SPACE}, hashtext($1::text))`, [blocker.id]);
        blocked = app.gql(`{ users(first: 50) { edges { node { id accessKey } } } }`, { key: blocker.key });
        await waitForLockWaiters(app, 1);
        const waiting = await waitingViewsStatements(app);
        expect(waiting).toHaveLength(1);
        page = app.gql(
          `query ($id: ID!) { a: users(first: 50) { edges { node { id email accessKey } } }
             b: users(first: 50) { edges { node { id accessKey } } } c: user(id: $id) { id accessKey } }`,
          { key: reader.key, variables: { id: target.id } },
        );
        await until(() => writer.waiting >= 1);
        const changed = await app.gql(mutation, { key: changer.key, variables: { id: reader.id } });
        expect(changed.body.errors).toBeUndefined();
        expect(await waitingViewsStatements(app)).toEqual(waiting);
      } finally {
        await other.query('ROLLBACK');
      }
      await blocked;
      const answer = (await page)!;
      const shownKeys: unknown[] = [];
      for (const alias of ['a', 'b']) {
        for (const { node } of answer.body.data?.[alias]?.edges ?? []) shownKeys.push(node.accessKey);
      }
      if (answer.body.data?.c) shownKeys.push(answer.body.data.c.accessKey);
      expect(shownKeys.filter((key) => key !== null)).toEqual([]);
      expect(answer.body.errors?.length).toBeGreaterThan(0);
      const views = await viewsSince(after);
      expect(views.filter((view) => view.actor_user_id === reader.id)).toEqual([]);
    });
  });
  it("one request's two disjoint pages queued in one batch with another admin's: two 'who' rows of one actor", async () => {
    const reader = await createOrganization(app, 'Two pages', TEST_PASSWORD);
    const blocker = await createUser(app, reader, { role: Role.ADMIN });
    const otherAdmin = await createUser(app, reader, { role: Role.ADMIN });
    const members = [await createUser(app, reader), await createUser(app, reader)];
    for (const user of [blocker, reader, otherAdmin]) await app.gql('{ me { id } }', { key: user.key });
    const writer = app.services.audit.keyViews;
    const after = await lastAuditEventId(app);
    let blocked: Promise<GraphQLResponse> | undefined;
    let pages: Promise<GraphQLResponse> | undefined;
    let single: Promise<GraphQLResponse> | undefined;
    await other.query('BEGIN');
    try {
      await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [blocker.id]);
      blocked = app.gql(`{ users(first: 50) { edges { node { id accessKey } } } }`, { key: blocker.key });
      await waitForLockWaiters(app, 1);
      pages = app.gql(
        `{ admins: users(filter: { role: ADMIN }) { edges { node { id accessKey } } }
           members: users(filter: { role: MEMBER }) { edges { node { id accessKey } } } }`,
        { key: reader.key },
      );
      await until(() => writer.waiting >= 2);
      single = app.gql(`{ me { accessKey } }`, { key: otherAdmin.key });
      await until(() => writer.waiting >= 3);
    } finally {
      await other.query('ROLLBACK');
    }
    await blocked;
    const answer = (await pages)!;
    const alone = (await single)!;
    expect(answer.body.errors).toBeUndefined();
    expect(alone.body.data!.me.accessKey).toBe(otherAdmin.key);
    expect(answer.body.data!.admins.edges.map(({ node }: any) => node.accessKey).sort()).toEqual(
      [reader, blocker, otherAdmin].map((admin) => admin.key).sort(),
    );
    expect(answer.body.data!.members.edges.map(({ node }: any) => node.accessKey).sort()).toEqual(
      members.map((member) => member.key).sort(),
    );
    const views = (await viewsSince(after)).filter((view) => view.actor_user_id !== blocker.id);
    const requestOf = new Map([
      [reader.id, answer.headers.get('x-request-id')],
      [otherAdmin.id, alone.headers.get('x-request-id')],
    ]);
    expect(views).toHaveLength(6);
    for (const view of views) expect(view.request_id).toBe(requestOf.get(view.actor_user_id));
    expect(
      views
        .filter((view) => view.actor_user_id === reader.id)
        .map((view) => view.target_user_id)
        .sort(),
    ).toEqual([reader, blocker, otherAdmin, ...members].map((user) => user.id).sort());
  });
});
