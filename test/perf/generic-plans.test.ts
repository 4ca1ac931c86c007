import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { createOrganization, createUser, login, type TestUser } from '../factories/organizations';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The reads of one row by id or digest that most requests make (a user's profile, their organization and key
 * row, an access key's and a session token's lookup on an auth-cache miss) are sent as `= $1`, not
 * `= ANY($1)` with one element: PostgreSQL then keeps one generic plan for each instead of planning it on
 * every run (src/db/scope.ts, oneOrAny). Each statement is taken as the service sent it and prepared on a
 * connection of the test's own, where pg_prepared_statements tells which plans PostgreSQL used.
 */
describe('by-id reads of one row keep a generic plan', () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;
  let client: Client;
  let database: { url: string; drop(): Promise<void> };
  const secret = randomBytes(32);

  beforeAll(async () => {
    database = await createTestDatabase();
    app = await startTestApp({ database: { url: database.url, secret } });
    admin = await createOrganization(app, 'Plans Inc', 'admin password 123');
    member = await createUser(app, admin, { password: 'member password 123' });
    client = new Client({ connectionString: app.databaseUrl });
    await client.connect();
  }, 60_000);
  afterAll(async () => {
    await client.end();
    await app.close();
    await database.drop();
  });

  /** The statements the service sent for one request. */
  async function statementsOf(query: string, options: Parameters<TestApp['gql']>[1]): Promise<string[]> {
    const before = app.queries.count;
    const response = await app.gql(query, options);
    expect(response.body.errors).toBeUndefined();
    return app.queries.since(before);
  }

  function only(statements: string[], marker: RegExp): string {
    const found = statements.filter((text) => marker.test(text));
    expect(found).toHaveLength(1);
    return found[0];
  }

  /** A value of each parameter's type: the member's id for a uuid, a byte for a bytea, now for a time. */
  function sampleOf(type: string): string {
    if (type === 'uuid') return `'${member.id}'`;
    if (type === 'uuid[]') return `'{${member.id}}'`;
    if (type === 'bytea') return `'\\x00'`;
    if (type === 'bytea[]') return `'{"\\\\x00"}'`;
    if (type.startsWith('timestamp')) return 'now()';
    throw new Error(`no sample for a parameter of type ${type}`);
  }

  /** Prepares `text`, runs it `runs` times, and returns PostgreSQL's count of generic and custom plans used. */
  async function plansOf(text: string, runs: number): Promise<{ generic: number; custom: number }> {
    const name = `plans_${Math.random().toString(36).slice(2, 10)}`;
    await client.query(`PREPARE ${name} AS ${text}`);
    try {
      const [{ types }] = (
        await client.query<{ types: string }>(
          'SELECT parameter_types::text[] AS types FROM pg_prepared_statements WHERE name = $1',
          [name],
        )
      ).rows as unknown as Array<{ types: string[] }>;
      const args = types.map((type) => sampleOf(type.replace('timestamp with time zone', 'timestamptz')));
      for (let i = 0; i < runs; i++) await client.query(`EXECUTE ${name}(${args.join(', ')})`);
      const [row] = (
        await client.query<{ generic: string; custom: string }>(
          'SELECT generic_plans AS generic, custom_plans AS custom FROM pg_prepared_statements WHERE name = $1',
          [name],
        )
      ).rows;
      return { generic: Number(row.generic), custom: Number(row.custom) };
    } finally {
      await client.query(`DEALLOCATE ${name}`);
    }
  }

  it('a user, their organization and their key row read by id: each one-valued, its generic plan kept after five runs', async () => {
    const profile = await statementsOf(`query ($id: ID!) { user(id: $id) { email organization { name } } }`, {
      key: admin.key,
      variables: { id: member.id },
    });
    // An admin's `me` comes from authentication, so its key row is read on its own (a profile primes it).
    const own = await statementsOf('{ me { accessKeyInfo { createdAt } } }', { key: admin.key });
    // The actor of an audit event goes through the request's user loader (scoped to what the caller may read).
    const audit = await statementsOf('{ auditEvents(first: 1) { edges { node { actor { email } } } } }', {
      key: admin.key,
    });
    const reads = [
      only(profile, /FROM users u LEFT JOIN access_keys k/),
      only(profile, /FROM organizations WHERE id/),
      only(own, /FROM access_keys k WHERE k\.user_id/),
      only(audit, /FROM users u WHERE .*u\.id =/),
    ];
    for (const text of reads) {
      expect(text).not.toMatch(/ANY\(/);
      expect(await plansOf(text, 8)).toEqual({ generic: 3, custom: 5 });
    }
  });

  it('the ANY form of the same read, with one id, is planned anew on every run (why the one-valued form)', async () => {
    const [profile] = (
      await statementsOf(`query ($id: ID!) { user(id: $id) { name } }`, {
        key: admin.key,
        variables: { id: member.id },
      })
    ).filter((text) => /FROM users u LEFT JOIN access_keys k/.test(text));
    const withAny = profile.replace(/WHERE u\.id = \$1$/, 'WHERE u.id = ANY($1::uuid[])');
    expect(withAny).not.toBe(profile);
    expect(await plansOf(withAny, 8)).toEqual({ generic: 0, custom: 8 });
  });

  it('several ids in one batch are still read in one statement, with ANY', async () => {
    const other = await createUser(app, admin);
    const before = app.queries.count;
    const response = await app.gql(`query ($a: ID!, $b: ID!) { a: user(id: $a) { email } b: user(id: $b) { email } }`, {
      key: admin.key,
      variables: { a: member.id, b: other.id },
    });
    expect(response.body.data).toEqual({ a: { email: member.email }, b: { email: other.email } });
    const profiles = app.queries.since(before).filter((text) => /FROM users u LEFT JOIN access_keys k/.test(text));
    expect(profiles).toHaveLength(1);
    expect(profiles[0]).toMatch(/WHERE u\.id = ANY\(\$1\)$/);
  });

  it('the lookups of a key and of a session token on an auth-cache miss: one-valued, generic plan kept', async () => {
    // A second instance on the same database has an empty cache: its first use of each credential is a lookup.
    const fresh = await startTestApp({ database: { url: database.url, secret } });
    try {
      const token = await login(app, { email: member.email, password: 'member password 123' });
      const byKey = fresh.queries.count;
      expect((await fresh.gql('{ me { id } }', { key: member.key })).body.data).toEqual({ me: { id: member.id } });
      const keyLookup = only(fresh.queries.since(byKey), /access-key lookup/);
      const byToken = fresh.queries.count;
      const session = await fresh.gql('{ me { id } }', { headers: { authorization: `Bearer ${token}` } });
      expect(session.body.data).toEqual({ me: { id: member.id } });
      const sessionLookup = only(fresh.queries.since(byToken), /FROM sessions s/);
      for (const text of [keyLookup, sessionLookup]) {
        expect(text).not.toMatch(/ANY\(/);
        expect(await plansOf(text, 8)).toEqual({ generic: 3, custom: 5 });
      }
    } finally {
      await fresh.close();
    }
  });
});
