import { Client } from 'pg';

import { generateAccessKey } from '../../src/access-keys/key-format';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { postFrom } from '../helpers/http';
import { keyRowsInReverseIdOrder, waitForLockWaiters } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { DAY_MS, TestClock } from '../helpers/test-clock';

const SET_POLICY = `mutation ($days: Int, $existing: Boolean) {
  setAccessKeyPolicy(maxKeyAgeDays: $days, applyToExistingKeys: $existing) { organization { id maxKeyAgeDays } existingKeysUpdated }
}`;
const KEY_INFO = 'query ($id: ID!) { user(id: $id) { accessKeyInfo { createdAt expiresAt } } }';
const EXPIRING = `query ($days: Int!) { users(first: 500, filter: { keyExpiresWithinDays: $days }) { edges { node { id } } } }`;
const ME = '{ me { id } }';

describe('expiry by policy (maxKeyAgeDays)', () => {
  const clock = new TestClock();
  let app: TestApp;
  let admin: TestUser;
  let nextAddress = 10;
  const pauses: { beforeAuthorityCheck?: () => Promise<void> } = {};

  beforeAll(async () => {
    app = await startTestApp({
      clock,
      env: { AUTH_FAILURE_LIMIT: '3' },
      hooks: { beforeAuthorityCheck: () => pauses.beforeAuthorityCheck?.() ?? Promise.resolve() },
    });
    admin = await createOrganization(app, 'Expiry Clinic');
  });
  afterAll(() => app.close());

  /** `me` with a key from an address of its own, so each test's refusals count for that address alone. */
  function meFrom(address: string, key: string) {
    return postFrom({ url: app.url, localAddress: address, query: ME, headers: { 'x-access-key': key } });
  }
  const freshAddress = () => `127.0.0.${nextAddress++}`;

  async function auditCount(organizationId: string): Promise<number> {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE organization_id = $1 AND action = 'ACCESS_KEY_POLICY_CHANGED'`,
      [organizationId],
    );
    return n;
  }

  describe('setAccessKeyPolicy', () => {
    it('refuses a value out of bounds with BAD_USER_INPUT and changes nothing', async () => {
      const org = await createOrganization(app, 'Bounds Clinic');
      for (const days of [0, -1, 3651]) {
        const response = await app.gql(SET_POLICY, { key: org.key, variables: { days } });
        expect(response.status).toBe(200);
        expect(response.body.errors?.[0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'maxKeyAgeDays' });
      }
      const [row] = await app.dataSource.query(`SELECT max_key_age_days FROM organizations WHERE id = $1`, [
        org.organizationId,
      ]);
      expect(row.max_key_age_days).toBeNull();
      expect(await auditCount(org.organizationId)).toBe(0);
    });

    it('is for admins only: a manager gets FORBIDDEN', async () => {
      const org = await createOrganization(app, 'Roles Clinic');
      const manager = await createUser(app, org, { role: Role.MANAGER });
      const response = await app.gql(SET_POLICY, { key: manager.key, variables: { days: 30 } });
      expect(response.body.errors?.[0].extensions?.code).toBe('FORBIDDEN');
      expect(await auditCount(org.organizationId)).toBe(0);
    });

    it('sets the policy, shows it on organization, and is audited', async () => {
      const org = await createOrganization(app, 'Audit Clinic');
      const response = await app.gql(SET_POLICY, { key: org.key, variables: { days: 90 } });
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data!.setAccessKeyPolicy).toEqual({
        organization: { id: org.organizationId, maxKeyAgeDays: 90 },
        existingKeysUpdated: 0,
      });
      const shown = await app.gql('{ organization { maxKeyAgeDays } }', { key: org.key });
      expect(shown.body.data!.organization.maxKeyAgeDays).toBe(90);
      expect(await auditCount(org.organizationId)).toBe(1);
      const events = await app.gql(
        '{ auditEvents(filter: { action: ACCESS_KEY_POLICY_CHANGED }) { edges { node { action actor { id } } } } }',
        {
          key: org.key,
        },
      );
      expect(events.body.data!.auditEvents.edges).toEqual([
        { node: { action: 'ACCESS_KEY_POLICY_CHANGED', actor: { id: org.id } } },
      ]);
    });
  });

  it('a key past its age is refused, from the auth cache without reading its row; a key inside its age works; the expiring-soon filter finds the first', async () => {
    expect((await app.gql(SET_POLICY, { key: admin.key, variables: { days: 30 } })).body.errors).toBeUndefined();
    const old = await createUser(app, admin);
    const oldInfo = await app.gql(KEY_INFO, { key: admin.key, variables: { id: old.id } });
    const { createdAt, expiresAt } = oldInfo.body.data!.user.accessKeyInfo;
    expect(new Date(expiresAt).getTime() - new Date(createdAt).getTime()).toBeGreaterThan(30 * DAY_MS - 60_000);
    expect(new Date(expiresAt).getTime() - new Date(createdAt).getTime()).toBeLessThan(30 * DAY_MS + 60_000);

    const address = freshAddress();
    // Authenticated once: the principal, with its key's expiry, is now in the auth cache.
    expect((await meFrom(address, old.key)).status).toBe(200);

    clock.advance(20 * DAY_MS);
    const young = await createUser(app, admin);
    expect((await meFrom(address, young.key)).status).toBe(200);
    clock.advance(11 * DAY_MS); // the old key is 31 days old, the young one 11

    // The young key's note of use is written a second later, in the background: written now, outside the window.
    await app.services.accessKeys.flushUse();
    const before = app.queries.count;
    const refused = await meFrom(address, old.key);
    expect(refused.status).toBe(401);
    expect(app.queries.since(before).filter((statement) => statement.includes('access_keys'))).toEqual([]);
    // Exactly the answer of a key that never existed.
    const unknown = await meFrom(freshAddress(), generateAccessKey());
    expect(unknown.status).toBe(401);
    expect(refused.body).toEqual(unknown.body);

    expect((await meFrom(address, young.key)).status).toBe(200);

    // Uncached (another instance, or after eviction): the lookup refuses it too.
    app.services.authCache.evictUser(old.id);
    expect((await meFrom(freshAddress(), old.key)).status).toBe(401);

    const expiring = await app.gql(EXPIRING, { key: admin.key, variables: { days: 7 } });
    expect(expiring.body.errors).toBeUndefined();
    const ids = expiring.body.data!.users.edges.map((edge: { node: { id: string } }) => edge.node.id);
    expect(ids).toContain(old.id);
    expect(ids).not.toContain(young.id);
    expect(ids).not.toContain(admin.id); // issued before the policy, without applyToExistingKeys: no expiry
  });

  it('an expired key is counted like an unknown key: after AUTH_FAILURE_LIMIT uses its address gets 429', async () => {
    const org = await createOrganization(app, 'Counting Clinic');
    expect((await app.gql(SET_POLICY, { key: org.key, variables: { days: 1 } })).body.errors).toBeUndefined();
    const user = await createUser(app, org);
    const address = freshAddress();
    expect((await meFrom(address, user.key)).status).toBe(200);
    clock.advance(2 * DAY_MS);
    for (let i = 0; i < 3; i++) expect((await meFrom(address, user.key)).status).toBe(401);
    expect((await meFrom(address, user.key)).status).toBe(429);
  });

  it('a key that expires while its request runs cannot act: the check at the moment of the act uses the clock too', async () => {
    const org = await createOrganization(app, 'Act Clinic');
    expect((await app.gql(SET_POLICY, { key: org.key, variables: { days: 5 } })).body.errors).toBeUndefined();
    const member = await createUser(app, org);
    const admin2 = await createUser(app, org, { role: Role.ADMIN });
    expect((await app.gql(ME, { key: admin2.key })).status).toBe(200);
    // Authenticated (from the cache) before its expiry; the clock passes it inside the act's transaction.
    pauses.beforeAuthorityCheck = async () => {
      pauses.beforeAuthorityCheck = undefined;
      clock.advance(6 * DAY_MS);
    };
    const response = await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
      key: admin2.key,
      variables: { id: member.id },
    });
    expect(response.body.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(response.body.data).toBeNull();
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE target_user_id = $1 AND action = 'ACCESS_KEY_REGENERATED'`,
      [member.id],
    );
    expect(n).toBe(0);
  });

  it('applyToExistingKeys gives existing keys an expiry counted from their creation, and null takes it away', async () => {
    const org = await createOrganization(app, 'Existing Clinic');
    const member = await createUser(app, org);
    const applied = await app.gql(SET_POLICY, { key: org.key, variables: { days: 3650, existing: true } });
    expect(applied.body.data!.setAccessKeyPolicy.existingKeysUpdated).toBe(2);
    const info = await app.gql(KEY_INFO, { key: org.key, variables: { id: member.id } });
    const { createdAt, expiresAt } = info.body.data!.user.accessKeyInfo;
    expect(new Date(expiresAt).getTime() - new Date(createdAt).getTime()).toBe(3650 * DAY_MS);

    const cleared = await app.gql(SET_POLICY, { key: org.key, variables: { days: null, existing: true } });
    expect(cleared.body.data!.setAccessKeyPolicy).toMatchObject({
      organization: { maxKeyAgeDays: null },
      existingKeysUpdated: 2,
    });
    const after = await app.gql(KEY_INFO, { key: org.key, variables: { id: member.id } });
    expect(after.body.data!.user.accessKeyInfo.expiresAt).toBeNull();
  });

  it('applyToExistingKeys never brings back an expired key: a longer policy or none leaves it expired, and it is not counted', async () => {
    const org = await createOrganization(app, 'Lapsed Clinic');
    expect((await app.gql(SET_POLICY, { key: org.key, variables: { days: 1 } })).body.errors).toBeUndefined();
    const member = await createUser(app, org);
    const issued = (await app.gql(KEY_INFO, { key: org.key, variables: { id: member.id } })).body.data!.user
      .accessKeyInfo.expiresAt;
    clock.advance(2 * DAY_MS);
    expect((await meFrom(freshAddress(), member.key)).status).toBe(401);

    // Only the admin's key (issued before any policy, no expiry) is changed, each time.
    for (const days of [3650, null]) {
      const applied = await app.gql(SET_POLICY, { key: org.key, variables: { days, existing: true } });
      expect(applied.body.data!.setAccessKeyPolicy.existingKeysUpdated).toBe(1);
      const info = await app.gql(KEY_INFO, { key: org.key, variables: { id: member.id } });
      expect(info.body.data!.user.accessKeyInfo.expiresAt).toBe(issued);
      app.services.authCache.evictUser(member.id);
      expect((await meFrom(freshAddress(), member.key)).status).toBe(401);
    }
  });

  it('applyToExistingKeys leaves a grace period that has ended where it ended, and does not count its row', async () => {
    const org = await createOrganization(app, 'Ended Grace Clinic');
    expect((await app.gql(SET_POLICY, { key: org.key, variables: { days: 30 } })).body.errors).toBeUndefined();
    const member = await createUser(app, org);
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { previousKeyExpiresAt } }',
      { key: org.key, variables: { id: member.id } },
    );
    expect(regenerated.body.data!.regenerateAccessKey.previousKeyExpiresAt).not.toBeNull();
    // As it would be an hour later, for a replaced key 40 days old: its grace period ended an hour ago, and its
    // key expires exactly as the policy gives (so only the grace period could be changed). TypeORM answers an
    // UPDATE as [rows, count].
    const [[ended]] = await app.dataSource.query(
      `UPDATE access_keys SET expires_at = date_trunc('milliseconds', created_at + interval '30 days'),
              previous_key_expires_at = date_trunc('milliseconds', now() - interval '1 hour'),
              previous_key_created_at = now() - interval '40 days'
        WHERE user_id = $1 RETURNING previous_key_expires_at`,
      [member.id],
    );

    const applied = await app.gql(SET_POLICY, { key: org.key, variables: { days: 30, existing: true } });
    expect(applied.body.data!.setAccessKeyPolicy.existingKeysUpdated).toBe(1); // the admin's key, issued with none
    const [after] = await app.dataSource.query(`SELECT previous_key_expires_at FROM access_keys WHERE user_id = $1`, [
      member.id,
    ]);
    expect(after.previous_key_expires_at).toEqual(ended.previous_key_expires_at);
  });

  it('applyToExistingKeys and the batched write of key uses lock the key rows in one order: no deadlock', async () => {
    const org = await createOrganization(app, 'Lock Order Clinic');
    // The first row's live version after the second's, in the heap and in every index (a regeneration
    // rewrites indexed columns): a statement that locks rows as it scans them takes the second first, while
    // the write of key uses takes them by user id.
    const { first, second, made } = await keyRowsInReverseIdOrder(app, {
      makeUser: () => createUser(app, org),
      relocate: async (smaller) => {
        const regenerated = await app.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
          key: org.key,
          variables: { id: smaller.id },
        });
        smaller.key = regenerated.body.data!.regenerateAccessKey.accessKey;
      },
    });
    const keys = made + 1; // and the organization's admin's

    // A trigger that waits on an advisory lock the test holds, when the policy writes the second row: the
    // policy's statement stands still there, with the rows it has locked so far.
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    await app.dataSource.query(`
      CREATE FUNCTION hold_policy_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.user_id = '${second.id}' AND NEW.expires_at IS DISTINCT FROM OLD.expires_at THEN
          PERFORM pg_advisory_xact_lock(4711);
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER hold_policy_write BEFORE UPDATE ON access_keys FOR EACH ROW EXECUTE FUNCTION hold_policy_write();`);
    try {
      await holder.query('SELECT pg_advisory_lock(4711)');
      const policy = app.gql(SET_POLICY, { key: org.key, variables: { days: 3650, existing: true } });
      await waitForLockWaiters(app, 1);
      for (const user of [first, second])
        app.services.accessKeys.markUsed(app.keyCrypto.digest(user.key).toString('base64'));
      // The write skips the rows the other side holds, then waits for each of them alone.
      const flushed = app.services.accessKeys.flushUse();
      await waitForLockWaiters(app, 2);
      await holder.query('SELECT pg_advisory_unlock(4711)');
      const applied = await policy;
      expect(applied.body.errors).toBeUndefined();
      expect(applied.body.data!.setAccessKeyPolicy.existingKeysUpdated).toBe(keys);
      await flushed;
      const [row] = await app.dataSource.query(`SELECT last_used_at FROM access_keys WHERE user_id = $1`, [first.id]);
      expect(row.last_used_at).not.toBeNull();
    } finally {
      await app.dataSource.query(`DROP TRIGGER hold_policy_write ON access_keys; DROP FUNCTION hold_policy_write();`);
      await holder.end();
    }
  });

  it('the expiring-soon filter is for admins: a manager gets FORBIDDEN', async () => {
    const manager = await createUser(app, admin, { role: Role.MANAGER });
    const response = await app.gql(EXPIRING, { key: manager.key, variables: { days: 7 } });
    expect(response.body.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });
});
