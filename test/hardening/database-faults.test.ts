import { randomBytes } from 'node:crypto';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { OwnPostgres, until } from '../helpers/own-postgres';
import { startTestApp, type TestApp } from '../helpers/test-app';

describe('database faults', () => {
  let postgres: OwnPostgres;
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    postgres = await OwnPostgres.start();
    app = await startTestApp({
      database: { url: postgres.url, secret: randomBytes(32) },
      env: { DB_CONNECT_TIMEOUT_MS: '1000' },
    });
    admin = await createOrganization(app);
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await postgres?.destroy();
  });

  const readyz = () => fetch(app.url.replace(/\/graphql$/, '/readyz')).then((r) => r.status);

  it('PostgreSQL stopped mid-traffic: the process survives, clients get 503 or masked errors, and it recovers within 5 s', async () => {
    const member = await createUser(app, admin);
    const statuses: number[] = [];
    const bodies: string[] = [];
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const queries = [
          app.gql('{ me { id } }', { key: admin.key }),
          app.gql('query ($id: ID!) { user(id: $id) { email accessKey } }', {
            key: admin.key,
            variables: { id: member.id },
          }),
          app.gql('{ me { id } }', { key: member.key }),
        ];
        for (const response of await Promise.allSettled(queries)) {
          if (response.status === 'fulfilled') {
            statuses.push(response.value.status);
            bodies.push(JSON.stringify(response.value.body));
          }
        }
      }
    })();

    await new Promise((resolve) => setTimeout(resolve, 300));
    await postgres.stop();
    await until(readyz, (status) => status === 503);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await fetch(app.url.replace(/\/graphql$/, '/healthz'))).status).toBe(200);

    await postgres.restart();
    const restartedAt = Date.now();
    await until(
      async () => (await app.gql('{ me { id } }', { key: admin.key })).status,
      (status) => status === 200,
      5000,
    );
    await until(readyz, (status) => status === 200, 5000);
    const member2 = await app.gql('query ($id: ID!) { user(id: $id) { email accessKey } }', {
      key: admin.key,
      variables: { id: member.id },
    });
    expect(member2.body.data!.user.accessKey).toBe(member.key);
    expect(Date.now() - restartedAt).toBeLessThanOrEqual(5000);
    stop = true;
    await traffic;

    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
    // Never a 500 with details, never a refused credential: an outage is not the client's fault.
    for (const status of statuses) expect([200, 503]).toContain(status);
    for (const body of bodies) expect(body).not.toMatch(/ECONNREFUSED|stack|node_modules|terminat|SELECT/i);
  }, 60_000);

  it('a regeneration cut off by a database failure leaves the old key working and no half-written row', async () => {
    const user = await createUser(app, admin);
    const [before] = await app.dataSource.query(
      `SELECT key_digest, key_ciphertext FROM access_keys WHERE user_id = $1`,
      [user.id],
    );
    // The connection dies after the key row was updated, while the audit event is being written.
    await app.dataSource.query(`
      CREATE FUNCTION die_mid_regeneration() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$`);
    await app.dataSource.query(`
      CREATE TRIGGER die_mid_regeneration BEFORE INSERT ON audit_events FOR EACH ROW
      WHEN (NEW.action = 'ACCESS_KEY_REGENERATED') EXECUTE FUNCTION die_mid_regeneration()`);
    try {
      const response = await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
        key: admin.key,
        variables: { id: user.id },
      });
      expect(response.body.data).toBeNull();
      expect(['SERVICE_UNAVAILABLE', 'INTERNAL_SERVER_ERROR']).toContain(response.body.errors![0].extensions!.code);
    } finally {
      await until(
        () => app.dataSource.query(`DROP TRIGGER die_mid_regeneration ON audit_events`),
        (r) => Array.isArray(r),
      );
      await app.dataSource.query(`DROP FUNCTION die_mid_regeneration()`);
    }
    const [after] = await app.dataSource.query(
      `SELECT key_digest, key_ciphertext FROM access_keys WHERE user_id = $1`,
      [user.id],
    );
    expect(after).toEqual(before);
    expect((await app.gql('{ me { id } }', { key: user.key })).status).toBe(200);
  }, 30_000);
});
