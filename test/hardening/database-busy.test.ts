import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { until } from '../helpers/own-postgres';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

/**
 * PostgreSQL refusing connections (too many clients), lock waits past the statement timeout, deadlocks and
 * serialization failures: each is 503 SERVICE_UNAVAILABLE with Retry-After, never a 500, a masked error or a
 * refused credential, and an outage is logged once when it starts and once when it ends.
 *
 * The service connects as a role of its own (superusers are exempt from connection limits), so the test can
 * refuse its connections with `ALTER ROLE ... CONNECTION LIMIT 0` and let them back in when it chooses.
 */
describe('the database cannot serve requests', () => {
  const role = `crm_limited_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  let database: { url: string; drop(): Promise<void> };
  let superuser: Client;
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    database = await createTestDatabase();
    superuser = new Client({ connectionString: database.url });
    await superuser.connect();
    const name = new URL(database.url).pathname.slice(1);
    await superuser.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    await superuser.query(`GRANT CONNECT ON DATABASE ${name} TO ${role}`);
    await superuser.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
    await superuser.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
    await superuser.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
    const url = new URL(database.url);
    url.username = role;
    url.password = password;
    app = await startTestApp({
      database: { url: url.toString(), secret: randomBytes(32) },
      captureLogs: true,
      env: { LOG_LEVEL: 'info', DB_STATEMENT_TIMEOUT_MS: '300', DB_CONNECT_TIMEOUT_MS: '1000' },
    });
    admin = await createOrganization(app);
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    // Dropping the database ends every connection to it, this one included: end it first.
    await superuser?.end();
    await database?.drop();
    const server = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
    await server.connect();
    await server.query(`DROP ROLE IF EXISTS ${role}`).finally(() => server.end());
  });

  const errorLines = (since: number) => app.logs.slice(since).filter((line) => JSON.parse(line).level >= 50);
  const readyz = () => fetch(app.url.replace(/\/graphql$/, '/readyz'));

  function expectUnavailable(response: {
    status: number;
    headers: Headers;
    body: { errors?: Array<{ extensions?: Record<string, any>; message: string }> };
  }) {
    expect(response.status).toBe(503);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(response.body.errors![0].extensions!.code).toBe('SERVICE_UNAVAILABLE');
    expect(response.body.errors![0].extensions!.requestId).toBe(response.headers.get('x-request-id'));
    expect(JSON.stringify(response.body)).not.toMatch(/too many|connection|SELECT|statement|deadlock|serializ|lock/i);
  }

  it('too many clients: 503 with Retry-After from key lookups, resolvers and /readyz; one log line for the outage, one when it ends', async () => {
    const member = await createUser(app, admin);
    await app.gql('{ me { id } }', { key: admin.key });
    const logsBefore = app.logs.length;

    await superuser.query(`ALTER ROLE ${role} CONNECTION LIMIT 0`);
    try {
      await superuser.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);
      await duringTheOutage(member, logsBefore);
    } finally {
      await superuser.query(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
    }
    await until(
      () => app.gql('{ me { id } }', { key: member.key }),
      (response) => response.status === 200,
    );
    const recovered = await until(
      async () => app.logs.slice(logsBefore).map((line) => JSON.parse(line)),
      (entries) => entries.some((entry) => entry.level === 30 && /available again/.test(entry.msg)),
    );
    expect(recovered.filter((entry) => entry.level >= 50)).toHaveLength(1);
    expect((await readyz()).status).toBe(200);
  }, 60_000);

  async function duringTheOutage(member: TestUser, logsBefore: number) {
    const answers = [];
    for (let i = 0; i < 4; i++) {
      // A resolver's query (the admin's key is cached or looked up: either way PostgreSQL is needed).
      answers.push(
        await app.gql('query ($id: ID!) { user(id: $id) { email accessKey } }', {
          key: admin.key,
          variables: { id: member.id },
        }),
      );
      // A key never seen before: its lookup, in the authentication hook, needs PostgreSQL.
      answers.push(await app.gql('{ me { id } }', { key: member.key }));
    }
    for (const answer of answers) expectUnavailable(answer);
    const notReady = await readyz();
    expect(notReady.status).toBe(503);
    expect(Number(notReady.headers.get('retry-after'))).toBeGreaterThan(0);

    const lines = errorLines(logsBefore);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]).msg).toMatch(/database/i);
  }

  it('a row lock held past the statement timeout during a regeneration: 503 with Retry-After, the key unchanged', async () => {
    const user = await createUser(app, admin);
    const holder = new Client({ connectionString: database.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [user.id]);
      const response = await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
        key: admin.key,
        variables: { id: user.id },
      });
      expectUnavailable(response);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect((await app.gql('{ me { id } }', { key: user.key })).status).toBe(200);
    const retried = await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
      key: admin.key,
      variables: { id: user.id },
    });
    expect(retried.body.data!.regenerateAccessKey.accessKey).toMatch(/^cak_/);
  }, 30_000);

  it.each([
    ['a deadlock', '40P01'],
    ['a serialization failure', '40001'],
    ['a lock that is not available (lock_timeout)', '55P03'],
    ['a statement cancelled by its timeout', '57014'],
    ['too many connections', '53300'],
    ['a configuration limit', '53400'],
  ])('%s (%s) inside a change: 503 with Retry-After, nothing written', async (_label, sqlstate) => {
    const user = await createUser(app, admin);
    const fn = `fail_${sqlstate.toLowerCase()}_${randomBytes(3).toString('hex')}`;
    await superuser.query(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated failure' USING ERRCODE = '${sqlstate}'; END $$`);
    await superuser.query(`CREATE TRIGGER ${fn} BEFORE INSERT ON audit_events FOR EACH ROW
      WHEN (NEW.action = 'USER_UPDATED') EXECUTE FUNCTION ${fn}()`);
    try {
      const response = await app.gql(
        'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed" }) { name } }',
        {
          key: admin.key,
          variables: { id: user.id },
        },
      );
      expectUnavailable(response);
      expect(response.body.data).toBeNull();
    } finally {
      await superuser.query(`DROP TRIGGER ${fn} ON audit_events`);
      await superuser.query(`DROP FUNCTION ${fn}()`);
    }
    const [row] = await superuser.query(`SELECT name FROM users WHERE id = $1`, [user.id]).then((r) => r.rows);
    expect(row.name).toBe(user.name);
  });
});
