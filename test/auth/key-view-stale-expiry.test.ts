import type { Client } from 'pg';

import { ORGANIZATION_AUTHORITY_LOCK_SPACE } from '../../src/authorization/authority';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD } from '../factories/organizations';
import { waitForLockWaiters, waitingViewsStatements } from '../helpers/locks';
import {
  type GraphQLResponse,
  lastAuditEventId,
  startAppWithSecondConnection,
  type TestApp,
} from '../helpers/test-app';

const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;
const REVEAL = 'query ($id: ID!) { user(id: $id) { id accessKey } }';
const SET_POLICY = `mutation ($days: Int, $existing: Boolean!) {
  setAccessKeyPolicy(maxKeyAgeDays: $days, applyToExistingKeys: $existing) { existingKeysUpdated } }`;

/**
 * INSERT_IF_CONFIRMED reads every CTE under the statement's one snapshot. Its access_keys CTE locks FOR KEY
 * SHARE, which does not conflict with an UPDATE of `expires_at` (not a key column): PostgreSQL then returns the
 * row version of the snapshot, not the committed one. When the statement waited earlier (here for the
 * organization's authority lock), an expiry committed in the meantime is not seen, and the expired key reveals a
 * key.
 */
describe('key view in one statement: an expiry committed while it waits', () => {
  let app: TestApp;
  let other: Client;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ app, other, close } = await startAppWithSecondConnection({ env: { AUTH_FAILURE_LIMIT: '10000' } }));
  });
  afterAll(() => close());

  it("setAccessKeyPolicy(applyToExistingKeys) expiring the caller's key, committed before the reveal confirms: no key, no view", async () => {
    const admin = await createOrganization(app, 'Stale Expiry Org', TEST_PASSWORD);
    const second = await createUser(app, admin, { role: Role.ADMIN });
    const target = await createUser(app, admin);
    await app.gql('{ me { id } }', { key: admin.key });
    // The caller's key is two days old: a 1-day policy applied to existing keys expires it at once.
    await app.dataSource.query(`UPDATE access_keys SET created_at = now() - interval '2 days' WHERE user_id = $1`, [
      admin.id,
    ]);
    const since = await lastAuditEventId(app);

    let policy: Promise<GraphQLResponse> | undefined;
    let response: Promise<GraphQLResponse> | undefined;
    await other.query('BEGIN');
    try {
      // The organization's authority lock held shared (as any act of it holds it): the policy, which takes it
      // exclusive, queues behind it, and the reveal's statement, which takes it shared first of all its locks,
      // queues behind the policy (PostgreSQL grants heavyweight locks in the order asked). The reveal's statement
      // has begun, its snapshot taken, when the policy commits. Not the caller's users row: the statement takes it
      // after the organization's authority lock, so the policy waited for the statement until a timeout ended one.
      await other.query(
        `SELECT pg_advisory_xact_lock_shared(${ORGANIZATION_AUTHORITY_LOCK_SPACE}, hashtext($1::text))`,
        [admin.organizationId],
      );
      policy = app.gql(SET_POLICY, { key: second.key, variables: { days: 1, existing: true } });
      await waitForLockWaiters(app, 1);
      response = app.gql(REVEAL, { key: admin.key, variables: { id: target.id } });
      await waitForLockWaiters(app, 2);
      expect(await waitingViewsStatements(app)).toHaveLength(1);
    } finally {
      await other.query('ROLLBACK');
    }
    expect((await policy!).body.errors).toBeUndefined();
    const [{ expired }] = await app.dataSource.query(
      `SELECT expires_at <= now() AS expired FROM access_keys WHERE user_id = $1`,
      [admin.id],
    );
    expect(expired).toBe(true);
    const revealed = await response!;
    const views = await app.dataSource.query(
      `SELECT target_user_id FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1 AND id > $2`,
      [admin.id, since],
    );
    // The expiry committed before the reveal's confirmation: the expired key reveals nothing.
    expect(JSON.stringify(revealed.body)).not.toMatch(KEY_PATTERN);
    expect(views).toEqual([]);
    // As a fresh request shows: that key is expired.
    const after = await app.gql(REVEAL, { key: admin.key, variables: { id: target.id } });
    expect(JSON.stringify(after.body)).not.toMatch(KEY_PATTERN);
  });
});
