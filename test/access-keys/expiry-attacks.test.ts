import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import type { Clock } from '../../src/access-keys/clock';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { postFrom } from '../helpers/http';
import { waitForLockWaiters } from '../helpers/locks';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';
import { DAY_MS } from '../helpers/test-clock';

const SET_POLICY = `mutation ($days: Int, $existing: Boolean) {
  setAccessKeyPolicy(maxKeyAgeDays: $days, applyToExistingKeys: $existing) { organization { id maxKeyAgeDays } existingKeysUpdated }
}`;
const ME = '{ me { id } }';
const RENAME_SELF = 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed At The Edge" }) { id } }';

/** Review C of issue 18: expiry by policy attacked at its edges and across instances. */
describe('expiry by policy under attack', () => {
  /** One stopped clock for both instances: time moves only when the test moves it, to the millisecond. */
  let frozenAtMs = Date.now();
  const clock: Clock & { advance(ms: number): void } = { now: () => frozenAtMs, advance: (ms) => (frozenAtMs += ms) };
  let database: { url: string; drop(): Promise<void> };
  let first: TestApp;
  let second: TestApp;

  beforeAll(async () => {
    database = await createTestDatabase();
    const secret = randomBytes(32);
    const env = { AUTH_FAILURE_LIMIT: '100000' };
    first = await startTestApp({ clock, database: { url: database.url, secret }, env });
    second = await startTestApp({ clock, database: { url: database.url, secret }, env });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
    await database?.drop();
  });

  function meOn(app: TestApp, key: string) {
    return postFrom({ url: app.url, localAddress: '127.0.0.2', query: ME, headers: { 'x-access-key': key } });
  }

  /** Moves the test clock to exactly `atMs` (ms since the epoch). */
  function setClock(atMs: number): void {
    frozenAtMs = atMs;
  }

  it('exactly at expiresAt a key is refused the same way by the lookup, the auth cache and the act, whatever the sub-millisecond part', async () => {
    const admin: TestUser = await createOrganization(first, 'Boundary Clinic');
    const member = await createUser(first, admin);
    // PostgreSQL keeps microseconds; a creation time between two milliseconds is the ordinary case.
    await first.dataSource.query(
      `UPDATE access_keys SET created_at = date_trunc('second', now()) + interval '0.123456 seconds' WHERE user_id = $1`,
      [member.id],
    );
    const applied = await first.gql(SET_POLICY, { key: admin.key, variables: { days: 1, existing: true } });
    expect(applied.body.errors).toBeUndefined();
    const info = await first.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { expiresAt } } }', {
      key: admin.key,
      variables: { id: member.id },
    });
    const expiresAtMs = new Date(info.body.data!.user.accessKeyInfo.expiresAt).getTime();

    // One millisecond before: it works, and is cached on the first instance.
    setClock(expiresAtMs - 1);
    expect((await meOn(first, member.key)).status).toBe(200);
    // Exactly at the shown expiry: the cached path refuses it, and so must the uncached lookup on the other
    // instance (it never saw the key) and the check at the moment of an act.
    setClock(expiresAtMs);
    expect((await meOn(first, member.key)).status).toBe(401);
    expect((await meOn(second, member.key)).status).toBe(401);
    const act = await second.gql(RENAME_SELF, { key: member.key, variables: { id: member.id } });
    expect(act.status).toBe(401);
    const [row] = await first.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).not.toBe('Renamed At The Edge');
  });

  it('a regeneration with a grace period does not bring an expired key back: the grace period is for a key that still worked', async () => {
    const admin: TestUser = await createOrganization(first, 'Revival Clinic');
    expect((await first.gql(SET_POLICY, { key: admin.key, variables: { days: 1 } })).body.errors).toBeUndefined();
    const member = await createUser(first, admin);
    expect((await meOn(first, member.key)).status).toBe(200);
    clock.advance(2 * DAY_MS);
    expect((await meOn(second, member.key)).status).toBe(401);
    const regenerated = await first.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { previousKeyExpiresAt } }',
      {
        key: admin.key,
        variables: { id: member.id },
      },
    );
    expect(regenerated.body.errors).toBeUndefined();
    expect(regenerated.body.data!.regenerateAccessKey.previousKeyExpiresAt).toBeNull();
    // Neither instance takes the expired key, cached or not, and it cannot act.
    expect((await meOn(first, member.key)).status).toBe(401);
    expect((await meOn(second, member.key)).status).toBe(401);
    const act = await second.gql(RENAME_SELF, { key: member.key, variables: { id: member.id } });
    expect(act.status).toBe(401);
  });

  it('applyToExistingKeys reaches the key a grace period keeps working: a replaced key older than the new age stops at once', async () => {
    // The service clock at the database's: the key issued today must be young by both.
    setClock(Date.now());
    const admin: TestUser = await createOrganization(first, 'Grace Age Clinic');
    const member = await createUser(first, admin);
    const oldKey = member.key;
    // The member's key was issued 30 days ago (no policy then); it is replaced now with a week's grace period.
    await first.dataSource.query(`UPDATE access_keys SET created_at = now() - interval '30 days' WHERE user_id = $1`, [
      member.id,
    ]);
    const regenerated = await first.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 604800) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    const newKey: string = regenerated.body.data!.regenerateAccessKey.accessKey;
    expect((await meOn(first, oldKey)).status).toBe(200);

    // Keys older than a day expire, existing ones included: the 30-day-old key is one of them, replaced or not.
    const applied = await first.gql(SET_POLICY, { key: admin.key, variables: { days: 1, existing: true } });
    expect(applied.body.errors).toBeUndefined();

    expect((await meOn(first, oldKey)).status).toBe(401);
    expect((await meOn(second, oldKey)).status).toBe(401);
    const act = await second.gql(RENAME_SELF, { key: oldKey, variables: { id: member.id } });
    expect(act.status).toBe(401);
    const [row] = await first.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).not.toBe('Renamed At The Edge');
    // The key issued today keeps working, and its profile no longer announces a grace period.
    expect((await meOn(second, newKey)).status).toBe(200);
    const info = await first.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { previousKeyExpiresAt } } }', {
      key: admin.key,
      variables: { id: member.id },
    });
    expect(new Date(info.body.data!.user.accessKeyInfo.previousKeyExpiresAt).getTime()).toBeLessThan(Date.now());

    // A grace period begun before previous_key_created_at was kept: its key's age is unknown, it ends too.
    const older = await createUser(first, admin);
    await first.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 604800) { accessKey } }',
      {
        key: admin.key,
        variables: { id: older.id },
      },
    );
    await first.dataSource.query(`UPDATE access_keys SET previous_key_created_at = NULL WHERE user_id = $1`, [
      older.id,
    ]);
    expect((await meOn(first, older.key)).status).toBe(200);
    expect(
      (await first.gql(SET_POLICY, { key: admin.key, variables: { days: 1, existing: true } })).body.errors,
    ).toBeUndefined();
    expect((await meOn(first, older.key)).status).toBe(401);
    const olderInfo = await first.gql('query ($id: ID!) { user(id: $id) { accessKeyInfo { previousKeyExpiresAt } } }', {
      key: admin.key,
      variables: { id: older.id },
    });
    expect(olderInfo.body.errors).toBeUndefined();
    expect(new Date(olderInfo.body.data!.user.accessKeyInfo.previousKeyExpiresAt).getTime()).toBeLessThanOrEqual(
      Date.now(),
    );
  });

  it('applyToExistingKeys reaches a key cached on another instance: it is refused there once past its new expiry', async () => {
    const admin: TestUser = await createOrganization(first, 'Reach Clinic');
    const member = await createUser(first, admin);
    // Cached on the second instance with no expiry at all.
    expect((await meOn(second, member.key)).status).toBe(200);
    expect((await meOn(second, member.key)).status).toBe(200);
    const applied = await first.gql(SET_POLICY, { key: admin.key, variables: { days: 1, existing: true } });
    expect(applied.body.data!.setAccessKeyPolicy.existingKeysUpdated).toBe(2);
    clock.advance(2 * DAY_MS);
    // The notification is asynchronous: each request is a poll (at most 200; it usually takes one or two).
    let status = 200;
    for (let i = 0; i < 200 && status === 200; i++) status = (await meOn(second, member.key)).status;
    expect(status).toBe(401);
  });

  it('a regeneration racing setAccessKeyPolicy(applyToExistingKeys) waits for it and issues under the new policy', async () => {
    const admin: TestUser = await createOrganization(first, 'Race Clinic');
    const [target, blocker] = [await createUser(first, admin), await createUser(first, admin)];
    const lock = new Client({ connectionString: database.url });
    await lock.connect();
    try {
      // Hold one key row the policy must rewrite: the policy then sits with its organization lock held.
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM access_keys WHERE user_id = $1 FOR UPDATE', [blocker.id]);
      const policy = first.gql(SET_POLICY, { key: admin.key, variables: { days: 10, existing: true } });
      await waitForLockWaiters(first, 1);
      const regeneration = second.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
        key: admin.key,
        variables: { id: target.id },
      });
      await waitForLockWaiters(first, 2);
      await lock.query('COMMIT');
      expect((await policy).body.errors).toBeUndefined();
      expect((await regeneration).body.errors).toBeUndefined();
    } finally {
      await lock.end();
    }
    const [row] = await first.dataSource.query(`SELECT expires_at, created_at FROM access_keys WHERE user_id = $1`, [
      target.id,
    ]);
    expect(row.expires_at).not.toBeNull();
  });

  it('the expiring-soon filter and the policy: a member gets FORBIDDEN and changes nothing; an admin sees only their organization', async () => {
    const mine: TestUser = await createOrganization(first, 'Mine Clinic');
    const theirs: TestUser = await createOrganization(first, 'Theirs Clinic');
    const member = await createUser(first, mine);
    for (const org of [mine, theirs]) {
      expect(
        (await first.gql(SET_POLICY, { key: org.key, variables: { days: 3650, existing: true } })).body.errors,
      ).toBeUndefined();
    }
    const refused = await first.gql(SET_POLICY, { key: member.key, variables: { days: 1, existing: true } });
    expect(refused.body.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const [org] = await first.dataSource.query(`SELECT max_key_age_days FROM organizations WHERE id = $1`, [
      mine.organizationId,
    ]);
    expect(org.max_key_age_days).toBe(3650);
    // Every key of both organizations expires within 3650 days of the (moved) clock.
    const EXPIRING = 'query { users(first: 500, filter: { keyExpiresWithinDays: 3650 }) { edges { node { id } } } }';
    expect((await first.gql(EXPIRING, { key: member.key })).body.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const listed = await first.gql(EXPIRING, { key: mine.key });
    const ids = listed.body.data!.users.edges.map((edge: { node: { id: string } }) => edge.node.id).sort();
    expect(ids).toEqual([mine.id, member.id].sort());
  });

  it('bad maxKeyAgeDays (float, string, huge, negative) is BAD_USER_INPUT as a variable, 400 inline, and changes nothing', async () => {
    const admin: TestUser = await createOrganization(first, 'Bad Input Clinic');
    const bad: unknown[] = [1.5, '30', 2 ** 31, 1e100, -5, true];
    for (const days of bad) {
      const response = await first.gql(SET_POLICY, { key: admin.key, variables: { days } });
      expect(response.status).toBeLessThan(500);
      expect(response.body.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    }
    for (const literal of ['1.5', '"30"', '99999999999', 'true']) {
      const response = await first.gql(
        `mutation { setAccessKeyPolicy(maxKeyAgeDays: ${literal}) { existingKeysUpdated } }`,
        { key: admin.key },
      );
      // Written into the document, GraphQL's own validation refuses it before any resolver runs.
      expect(response.status).toBe(400);
      expect(response.body.errors?.[0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    }
    const [row] = await first.dataSource.query(`SELECT max_key_age_days FROM organizations WHERE id = $1`, [
      admin.organizationId,
    ]);
    expect(row.max_key_age_days).toBeNull();
  });
});
