import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { type AppWithSecondConnection, startAppWithSecondConnection, type TestApp } from '../helpers/test-app';

const ME = '{ me { id } }';
const LOGOUT = 'mutation { logout }';
const LOGGED_OUT_EVENTS = `query ($target: ID!) {
  auditEvents(filter: { action: LOGGED_OUT, targetUserId: $target }, first: 10) {
    edges { node { action actorKind actor { id } target { id } ip requestId location } }
  }
}`;

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe('logout: its LOGGED_OUT audit event commits with the end of the session', () => {
  let setup: AppWithSecondConnection;
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    setup = await startAppWithSecondConnection();
    app = setup.app;
    admin = await createOrganization(app, 'Logout Audit Org', TEST_PASSWORD);
  });
  afterAll(() => setup.close());

  /** Every audit row whose target is the user, as text, and its action. */
  const rowsAbout = (userId: string): Promise<Array<{ action: string; row: string }>> =>
    app.dataSource.query(
      `SELECT action, row_to_json(e)::text AS row FROM audit_events e WHERE target_user_id = $1 ORDER BY id`,
      [userId],
    );

  it('writes exactly one LOGGED_OUT event: the user as actor and target, SESSION, ip and request id, no token', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    const response = await app.gql(LOGOUT, bearer(token));
    expect(response.body).toEqual({ data: { logout: true } });
    const requestId = response.headers.get('x-request-id');

    const rows = await app.dataSource.query(
      `SELECT organization_id, actor_user_id, actor_kind, target_user_id, ip, request_id, location
         FROM audit_events WHERE action = 'LOGGED_OUT' AND target_user_id = $1`,
      [person.id],
    );
    expect(rows).toEqual([
      {
        organization_id: admin.organizationId,
        actor_user_id: person.id,
        actor_kind: 'SESSION',
        target_user_id: person.id,
        ip: '127.0.0.1',
        request_id: requestId,
        location: null,
      },
    ]);
    const digest = app.keyCrypto.digest(token);
    for (const { row } of await rowsAbout(person.id)) {
      expect(row).not.toContain(token);
      expect(row).not.toContain(token.slice(4));
      expect(row).not.toContain(digest.toString('hex'));
      expect(row).not.toContain(digest.toString('base64'));
    }
    // The token stops working from the commit; a second logout with it is refused, and writes nothing.
    expect((await app.gql(ME, bearer(token))).status).toBe(401);
    expect((await app.gql(LOGOUT, bearer(token))).status).toBe(401);
    expect((await rowsAbout(person.id)).filter((r) => r.action === 'LOGGED_OUT')).toHaveLength(1);
  });

  it('auditEvents(filter: { action: LOGGED_OUT }) returns it to an admin', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    const response = await app.gql(LOGOUT, bearer(token));
    const audit = await app.gql(LOGGED_OUT_EVENTS, { key: admin.key, variables: { target: person.id } });
    expect(audit.body.errors).toBeUndefined();
    expect(audit.body.data!.auditEvents.edges.map((edge: any) => edge.node)).toEqual([
      {
        action: 'LOGGED_OUT',
        actorKind: 'SESSION',
        actor: { id: person.id },
        target: { id: person.id },
        ip: '127.0.0.1',
        requestId: response.headers.get('x-request-id'),
        location: null,
      },
    ]);
  });

  it('when the event cannot be written, the session is not ended: the token keeps working', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    await app.dataSource.query(`
      CREATE FUNCTION fail_logout_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'audit insert refused by the test'; END $$;
      CREATE TRIGGER fail_logout_audit BEFORE INSERT ON audit_events FOR EACH ROW
        WHEN (NEW.action = 'LOGGED_OUT') EXECUTE FUNCTION fail_logout_audit();`);
    try {
      const response = await app.gql(LOGOUT, bearer(token));
      expect(response.body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
      expect(response.body.data).toBeNull();
    } finally {
      await app.dataSource.query(`DROP TRIGGER fail_logout_audit ON audit_events; DROP FUNCTION fail_logout_audit();`);
    }
    const [{ revoked_at }] = await app.dataSource.query(`SELECT revoked_at FROM sessions WHERE token_digest = $1`, [
      app.keyCrypto.digest(token),
    ]);
    expect(revoked_at).toBeNull();
    expect((await app.gql(ME, bearer(token))).body.data).toEqual({ me: { id: person.id } });
    expect((await rowsAbout(person.id)).filter((r) => r.action === 'LOGGED_OUT')).toEqual([]);
    // Sent again, it ends the session and writes its one event.
    expect((await app.gql(LOGOUT, bearer(token))).body).toEqual({ data: { logout: true } });
    expect((await app.gql(ME, bearer(token))).status).toBe(401);
    expect((await rowsAbout(person.id)).filter((r) => r.action === 'LOGGED_OUT')).toHaveLength(1);
  });

  it('two logouts of one session racing: one ends it and writes the one event, the other is refused as ended', async () => {
    const person = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, person);
    // Both requests authenticate, then queue behind a lock the test holds on the session row.
    await setup.other.query('BEGIN');
    await setup.other.query(`SELECT id FROM sessions WHERE token_digest = $1 FOR SHARE`, [app.keyCrypto.digest(token)]);
    const first = app.gql(LOGOUT, bearer(token));
    const second = app.gql(LOGOUT, bearer(token));
    try {
      await waitForLockWaiters(app, 2);
    } finally {
      await setup.other.query('COMMIT');
    }
    const bodies = (await Promise.all([first, second])).map((response) => response.body);
    const ended = bodies.filter((body) => body.data?.logout === true);
    const refused = bodies.filter((body) => body.errors);
    expect(ended).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0].errors![0].extensions).toEqual({ code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' });
    expect(refused[0].errors![0].message).toMatch(/^The session is not valid: /);
    expect((await rowsAbout(person.id)).filter((r) => r.action === 'LOGGED_OUT')).toHaveLength(1);
    expect((await app.gql(ME, bearer(token))).status).toBe(401);
  });
});
