import { execFileSync } from 'node:child_process';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

describe('how keys are stored', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('a dump of the database contains no plaintext key, in any encoding', async () => {
    const users = [admin, await createUser(app, admin), await createUser(app, admin)];
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 60) { accessKey } }',
      {
        key: admin.key,
        variables: { id: users[1].id },
      },
    );
    const keys = [...users.map((user) => user.key), regenerated.body.data!.regenerateAccessKey.accessKey as string];

    const dump = execFileSync('pg_dump', ['--no-owner', app.databaseUrl], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(dump).toContain('COPY public.access_keys');
    expect(dump).toMatch(new RegExp(`cak_\\.\\.\\.${keys[0].slice(-4)}`)); // the hint is there, so the data is too
    for (const key of keys) {
      const body = key.slice(4);
      for (const encoded of [body, Buffer.from(key).toString('hex'), Buffer.from(key).toString('base64')]) {
        expect(dump).not.toContain(encoded);
      }
    }
  });

  it('a ciphertext moved to another user does not decrypt (the user id is bound to it)', async () => {
    const a = await createUser(app, admin);
    const b = await createUser(app, admin);
    await app.dataSource.query(
      `UPDATE access_keys SET key_ciphertext = (SELECT key_ciphertext FROM access_keys WHERE user_id = $1) WHERE user_id = $2`,
      [a.id, b.id],
    );
    const response = await app.gql('query ($id: ID!) { user(id: $id) { id accessKey } }', {
      key: admin.key,
      variables: { id: b.id },
    });
    expect(response.body.data!.user).toEqual({ id: b.id, accessKey: null });
    expect(response.body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
    expect(JSON.stringify(response.body)).not.toMatch(/cak_[0-9A-Za-z]{38}/);
  });

  it('a user whose key row is missing reads accessKey: null; Edit then Save (updateUser) creates a working key', async () => {
    const imported = await createUser(app, admin);
    await app.dataSource.query(`DELETE FROM access_keys WHERE user_id = $1`, [imported.id]);

    const blank = await app.gql('query ($id: ID!) { user(id: $id) { id accessKey accessKeyInfo { hint } } }', {
      key: admin.key,
      variables: { id: imported.id },
    });
    expect(blank.body.errors).toBeUndefined();
    expect(blank.body.data!.user).toEqual({ id: imported.id, accessKey: null, accessKeyInfo: null });
    expect((await app.gql('{ me { id } }', { key: imported.key })).status).toBe(401);

    const saved = await app.gql('mutation ($id: ID!) { updateUser(id: $id, input: {}) { id accessKey } }', {
      key: admin.key,
      variables: { id: imported.id },
    });
    expect(saved.body.errors).toBeUndefined();
    const newKey = saved.body.data!.updateUser.accessKey;
    expect(newKey).toMatch(/^cak_[0-9A-Za-z]{38}$/);
    const me = await app.gql('{ me { id } }', { key: newKey });
    expect(me.body.data!.me.id).toBe(imported.id);

    // A second save keeps the key it now has.
    const again = await app.gql(
      'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Imported Person" }) { accessKey } }',
      {
        key: admin.key,
        variables: { id: imported.id },
      },
    );
    expect(again.body.data!.updateUser.accessKey).toBe(newKey);
  });

  it('the database itself refuses a second key row for a user and a duplicate digest', async () => {
    const user = await createUser(app, admin);
    await expect(
      app.dataSource.query(
        `INSERT INTO access_keys (user_id, organization_id, key_digest, key_ciphertext, key_hint)
         VALUES ($1, $2, '\\x01', '\\x01', 'x')`,
        [user.id, user.organizationId],
      ),
    ).rejects.toThrow(/access_keys_pkey/);
    await app.dataSource.query(`DELETE FROM access_keys WHERE user_id = $1`, [user.id]);
    await expect(
      app.dataSource.query(
        `INSERT INTO access_keys (user_id, organization_id, key_digest, key_ciphertext, key_hint)
         SELECT $1, organization_id, key_digest, key_ciphertext, key_hint FROM access_keys WHERE user_id = $2`,
        [user.id, admin.id],
      ),
    ).rejects.toThrow(/access_keys_key_digest_key/);
  });
});
