import { abilityFor } from '../../src/authorization/abilities';
import { Role } from '../../src/users/user.entity';
import {
  createOrganization,
  createUser,
  login,
  TEST_PASSWORD,
  type TestUser,
  uniqueEmail,
} from '../factories/organizations';
import { lastAuditEventId, startTestApp, type TestApp } from '../helpers/test-app';

interface EventRow {
  action: string;
  actor_user_id: string | null;
  actor_kind: string;
  target_user_id: string | null;
  request_id: string | null;
  ip: string | null;
}

describe('audit log', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Audited Org', TEST_PASSWORD);
  });
  afterAll(() => app.close());

  async function eventsSince(id: string): Promise<EventRow[]> {
    return app.dataSource.query(
      `SELECT action, actor_user_id, actor_kind, target_user_id, request_id, ip FROM audit_events WHERE id > $1 ORDER BY id`,
      [id],
    );
  }

  async function failAuditInserts(action: string): Promise<() => Promise<void>> {
    const fn = `fail_audit_${action.toLowerCase()}`;
    await app.dataSource.query(`
      CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'audit insert refused by the test'; END $$`);
    await app.dataSource.query(
      `CREATE TRIGGER ${fn} BEFORE INSERT ON audit_events FOR EACH ROW WHEN (NEW.action = '${action}') EXECUTE FUNCTION ${fn}()`,
    );
    return async () => {
      await app.dataSource.query(`DROP TRIGGER ${fn} ON audit_events`);
      await app.dataSource.query(`DROP FUNCTION ${fn}()`);
    };
  }

  it('an admin reading 3 keys in one users query leaves exactly 3 ACCESS_KEY_VIEWED events, with actor and targets', async () => {
    const org = await createOrganization(app, 'Three Keys Org');
    const users = [await createUser(app, org), await createUser(app, org)];
    const since = await lastAuditEventId(app);
    const response = await app.gql('{ users(first: 10) { edges { node { id accessKey } } } }', { key: org.key });
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data!.users.edges).toHaveLength(3);
    const requestId = response.headers.get('x-request-id');

    const events = await eventsSince(since);
    expect(events).toHaveLength(3);
    for (const event of events) {
      expect(event).toMatchObject({
        action: 'ACCESS_KEY_VIEWED',
        actor_user_id: org.id,
        actor_kind: 'ACCESS_KEY',
        request_id: requestId,
        ip: '127.0.0.1',
      });
    }
    expect(events.map((e) => e.target_user_id).sort()).toEqual([org.id, ...users.map((u) => u.id)].sort());
  });

  it('the same key read twice in one request is one event; accessKeyInfo alone is none', async () => {
    const user = await createUser(app, admin);
    const since = await lastAuditEventId(app);
    await app.gql(
      'query ($id: ID!) { a: user(id: $id) { accessKey } b: user(id: $id) { accessKey accessKeyInfo { hint } } }',
      {
        key: admin.key,
        variables: { id: user.id },
      },
    );
    expect((await eventsSince(since)).map((e) => e.action)).toEqual(['ACCESS_KEY_VIEWED']);
    const info = await lastAuditEventId(app);
    await app.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { hint } } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(await eventsSince(info)).toEqual([]);
  });

  it('when the view cannot be recorded, the keys are withheld (fail closed)', async () => {
    const restore = await failAuditInserts('ACCESS_KEY_VIEWED');
    try {
      const response = await app.gql('{ users(first: 10) { edges { node { id email accessKey } } } }', {
        key: admin.key,
      });
      expect(JSON.stringify(response.body)).not.toMatch(/cak_[0-9A-Za-z]{38}/);
      const edges = response.body.data!.users.edges;
      expect(edges.length).toBeGreaterThan(0);
      for (const edge of edges) expect(edge.node.accessKey).toBeNull();
      expect(response.body.errors!.every((e) => e.extensions!.code === 'INTERNAL_SERVER_ERROR')).toBe(true);
      expect(JSON.stringify(response.body.errors)).not.toMatch(/audit insert refused/);
    } finally {
      await restore();
    }
  });

  it('a regeneration that also reads the new key back is one view of it', async () => {
    const user = await createUser(app, admin);
    const since = await lastAuditEventId(app);
    const response = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey user { accessKey } } }',
      {
        key: admin.key,
        variables: { id: user.id },
      },
    );
    const payload = response.body.data!.regenerateAccessKey;
    expect(payload.user.accessKey).toBe(payload.accessKey);
    expect((await eventsSince(since)).map((e) => e.action).sort()).toEqual([
      'ACCESS_KEY_REGENERATED',
      'ACCESS_KEY_VIEWED',
    ]);
  });

  it('reading the key back after regenerating shows the key this request issued, even if another admin regenerated since', async () => {
    // An organization of its own: a second admin would change what other tests here expect of theirs.
    const org = await createOrganization(app, 'Two Admins Org');
    const other = await createUser(app, org, { role: Role.ADMIN });
    const user = await createUser(app, org);
    const auth = await app.services.authenticator.authenticate(
      { headers: { 'x-access-key': other.key }, rawHeaders: ['X-Access-Key', other.key] },
      '127.0.0.9',
    );
    if (!auth.ok || !auth.principal) throw new Error('the other admin did not authenticate');
    const otherActor = {
      principal: auth.principal,
      ability: abilityFor(auth.principal),
      requestId: 'other-admin',
      ip: '127.0.0.9',
    };
    // The other admin's regeneration commits between this request's regeneration and its read-back.
    const regeneration = app.services.accessKeyRegeneration;
    const regenerate = regeneration.regenerateAccessKey.bind(regeneration);
    regeneration.regenerateAccessKey = async (actor, params) => {
      const result = await regenerate(actor, params);
      await regenerate(otherActor, params);
      return result;
    };
    try {
      const since = await lastAuditEventId(app);
      const response = await app.gql(
        'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey user { accessKey } } }',
        {
          key: org.key,
          variables: { id: user.id },
        },
      );
      const payload = response.body.data!.regenerateAccessKey;
      expect(payload.user.accessKey).toBe(payload.accessKey);
      const views = (await eventsSince(since)).filter(
        (e) => e.action === 'ACCESS_KEY_VIEWED' && e.actor_user_id === org.id,
      );
      expect(views).toHaveLength(1);
    } finally {
      regeneration.regenerateAccessKey = regenerate;
    }
  });

  it('a key that cannot be decrypted is not recorded as viewed: nothing was revealed', async () => {
    const user = await createUser(app, admin);
    await app.dataSource.query(`UPDATE access_keys SET key_ciphertext = $2 WHERE user_id = $1`, [
      user.id,
      Buffer.alloc(60, 7),
    ]);
    const since = await lastAuditEventId(app);
    const response = await app.gql('query ($id: ID!) { user(id: $id) { id accessKey } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(response.body.data!.user).toEqual({ id: user.id, accessKey: null });
    expect(response.body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
    expect(await eventsSince(since)).toEqual([]);
  });

  it('in a page of keys, one that cannot be decrypted is withheld and not recorded; the others are revealed and recorded', async () => {
    const org = await createOrganization(app, 'One Broken Key Org');
    const broken = await createUser(app, org);
    const intact = await createUser(app, org);
    await app.dataSource.query(`UPDATE access_keys SET key_ciphertext = $2 WHERE user_id = $1`, [
      broken.id,
      Buffer.alloc(60, 7),
    ]);
    const since = await lastAuditEventId(app);
    const response = await app.gql('{ users(first: 10) { edges { node { id accessKey } } } }', { key: org.key });
    const keys = new Map(
      response.body.data!.users.edges.map((e: { node: { id: string; accessKey: string | null } }) => [
        e.node.id,
        e.node.accessKey,
      ]),
    );
    expect(keys.get(broken.id)).toBeNull();
    expect(keys.get(intact.id)).toBe(intact.key);
    expect(keys.get(org.id)).toBe(org.key);
    expect(response.body.errors!.map((e) => e.extensions!.code)).toEqual(['INTERNAL_SERVER_ERROR']);
    const events = await eventsSince(since);
    expect(events.every((e) => e.action === 'ACCESS_KEY_VIEWED')).toBe(true);
    expect(events.map((e) => e.target_user_id).sort()).toEqual([org.id, intact.id].sort());
  });

  it('each mutation leaves its event with actor, target, kind, ip and request id', async () => {
    const since = await lastAuditEventId(app);
    const email = uniqueEmail('audited');
    const created = await app.gql(
      'mutation ($e: String!) { createUser(input: { email: $e, name: "Audited One" }) { id } }',
      {
        key: admin.key,
        variables: { e: email },
      },
    );
    const id = created.body.data!.createUser.id;
    const token = await login(app, admin);
    const asSession = { headers: { authorization: `Bearer ${token}` } };
    await app.gql('mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed" }) { id } }', {
      ...asSession,
      variables: { id },
    });
    await app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MANAGER) { id } }', {
      key: admin.key,
      variables: { id },
    });
    await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', { key: admin.key, variables: { id } });
    await app.gql('mutation ($id: ID!) { reactivateUser(id: $id) { id } }', { key: admin.key, variables: { id } });
    await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
      key: admin.key,
      variables: { id },
    });
    await app.gql('mutation ($c: String!) { changePassword(currentPassword: $c, newPassword: $c) }', {
      ...asSession,
      variables: { c: TEST_PASSWORD },
    });
    await app.gql('mutation { login(email: "nobody@example.test", password: "whatever whatever") { token } }');

    const events = await eventsSince(since);
    const target = (action: string) => events.filter((e) => e.action === action);
    expect(events.map((e) => e.action)).toEqual([
      'USER_CREATED',
      'ACCESS_KEY_CREATED',
      'LOGIN_SUCCEEDED',
      'USER_UPDATED',
      'USER_ROLE_CHANGED',
      'USER_DEACTIVATED',
      'USER_REACTIVATED',
      'ACCESS_KEY_REGENERATED',
      'ACCESS_KEY_VIEWED',
      'PASSWORD_CHANGED',
      'LOGIN_FAILED',
    ]);
    expect(target('USER_UPDATED')[0]).toMatchObject({
      actor_user_id: admin.id,
      actor_kind: 'SESSION',
      target_user_id: id,
    });
    expect(target('ACCESS_KEY_REGENERATED')[0]).toMatchObject({
      actor_user_id: admin.id,
      actor_kind: 'ACCESS_KEY',
      target_user_id: id,
    });
    expect(target('PASSWORD_CHANGED')[0]).toMatchObject({ actor_kind: 'SESSION', target_user_id: admin.id });
    expect(target('LOGIN_FAILED')[0]).toMatchObject({ actor_user_id: null, target_user_id: null });
    for (const event of events) {
      expect(event.request_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(event.ip).toBe('127.0.0.1');
    }
  });

  it('a mutation that fails or is rolled back leaves no event, and an event that cannot be written undoes the change', async () => {
    const existing = await createUser(app, admin);
    const since = await lastAuditEventId(app);
    const duplicate = await app.gql('mutation ($e: String!) { createUser(input: { email: $e, name: "Dup" }) { id } }', {
      key: admin.key,
      variables: { e: existing.email },
    });
    expect(duplicate.body.errors![0].extensions!.code).toBe('CONFLICT');
    const lastAdmin = await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', {
      key: admin.key,
      variables: { id: admin.id },
    });
    expect(lastAdmin.body.errors![0].extensions!.code).toBe('CONFLICT');
    expect(await eventsSince(since)).toEqual([]);

    const restore = await failAuditInserts('USER_ROLE_CHANGED');
    try {
      const response = await app.gql('mutation ($id: ID!) { setUserRole(id: $id, role: MANAGER) { role } }', {
        key: admin.key,
        variables: { id: existing.id },
      });
      expect(response.body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
    } finally {
      await restore();
    }
    const [{ role }] = await app.dataSource.query(`SELECT role FROM users WHERE id = $1`, [existing.id]);
    expect(role).toBe(Role.MEMBER);
    expect(await eventsSince(since)).toEqual([]);
  });

  it('auditEvents: newest first, filtered, paginated, for admins of the organization only', async () => {
    const org = await createOrganization(app, 'Paged Audit Org');
    const people = [await createUser(app, org), await createUser(app, org), await createUser(app, org)];
    const QUERY = `query ($filter: AuditEventsFilter, $first: Int, $after: String) {
      auditEvents(filter: $filter, first: $first, after: $after) {
        edges { cursor node { id action actorKind actor { id } target { id email } ip requestId createdAt } }
        pageInfo { hasNextPage endCursor }
      }
    }`;
    const all = await app.gql(QUERY, { key: org.key, variables: { first: 100 } });
    const nodes = all.body.data!.auditEvents.edges.map((e: any) => e.node);
    // Ids are opaque tokens (no order of their own): newest first shows in createdAt, and each id is unique.
    const times = nodes.map((n: any) => Date.parse(n.createdAt));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(new Set(nodes.map((n: any) => n.id)).size).toBe(nodes.length);
    expect(nodes.every((n: any) => !/^[0-9]+$/.test(n.id))).toBe(true);
    expect(nodes.every((n: any) => !n.target || [org.id, ...people.map((p) => p.id)].includes(n.target.id))).toBe(true);

    const created = await app.gql(QUERY, {
      key: org.key,
      variables: { filter: { action: 'USER_CREATED', actorId: org.id }, first: 2 },
    });
    const page1 = created.body.data!.auditEvents;
    expect(page1.edges.map((e: any) => e.node.target.id)).toEqual([people[2].id, people[1].id]);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = await app.gql(QUERY, {
      key: org.key,
      variables: { filter: { action: 'USER_CREATED', actorId: org.id }, first: 2, after: page1.pageInfo.endCursor },
    });
    expect(page2.body.data!.auditEvents.edges.map((e: any) => e.node.target.id)).toEqual([people[0].id]);

    const byTarget = await app.gql(QUERY, { key: org.key, variables: { filter: { targetUserId: people[0].id } } });
    expect(byTarget.body.data!.auditEvents.edges.map((e: any) => e.node.action).sort()).toEqual([
      'ACCESS_KEY_CREATED',
      'ACCESS_KEY_VIEWED',
      'USER_CREATED',
    ]);

    const future = await app.gql(QUERY, {
      key: org.key,
      variables: { filter: { since: new Date(Date.now() + 60_000).toISOString() } },
    });
    expect(future.body.data!.auditEvents.edges).toEqual([]);

    // first: 0 still tells whether an event follows (Relay: more edges after the cursor than first).
    const none = await app.gql(QUERY, { key: org.key, variables: { first: 0 } });
    expect(none.body.data!.auditEvents).toEqual({ edges: [], pageInfo: { hasNextPage: true, endCursor: null } });
    const oldest = await app.gql(QUERY, {
      key: org.key,
      variables: { first: 0, after: nodes.at(-1).id },
    });
    expect(oldest.body.data!.auditEvents.pageInfo.hasNextPage).toBe(false);

    const bad = await app.gql(QUERY, { key: org.key, variables: { after: 'abc' } });
    expect(bad.body.errors![0].extensions!.code).toBe('BAD_USER_INPUT');
    // An empty id filters by no one: refused, not read as no filter (every actor's, every target's events).
    for (const field of ['actorId', 'targetUserId']) {
      const empty = await app.gql(QUERY, { key: org.key, variables: { filter: { [field]: '' } } });
      expect(empty.body.errors).toHaveLength(1);
      expect(empty.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
      expect(empty.body.data ?? null).toBeNull();
    }

    // Another organization's admin sees none of these events.
    const other = await app.gql(QUERY, { key: admin.key, variables: { filter: { targetUserId: people[0].id } } });
    expect(other.body.data!.auditEvents.edges).toEqual([]);
    const manager = await createUser(app, org, { role: Role.MANAGER });
    const forbidden = await app.gql(QUERY, { key: manager.key });
    expect(forbidden.body.errors![0].extensions!.code).toBe('FORBIDDEN');
  });
});
