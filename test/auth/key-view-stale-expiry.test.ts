import type { Client } from 'pg';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
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
 * row version of the snapshot, not the committed one. When the statement waited earlier (here for the caller's
 * users row), an expiry committed in the meantime is not seen, and the expired key reveals a key.
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

    let response: Promise<GraphQLResponse> | undefined;
    await other.query('BEGIN');
    try {
      // Any transaction holding the caller's users row (an act on it, a leak report) makes the statement wait.
      await other.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [admin.id]);
      response = app.gql(REVEAL, { key: admin.key, variables: { id: target.id } });
      await waitForLockWaiters(app, 1);
      const policy = await app.gql(SET_POLICY, { key: second.key, variables: { days: 1, existing: true } });
      expect(policy.body.errors).toBeUndefined();
      const [{ expired }] = await app.dataSource.query(
        `SELECT expires_at <= now() AS expired FROM access_keys WHERE user_id = $1`,
        [admin.id],
      );
      expect(expired).toBe(true);
    } finally {
      await other.query('ROLLBACK');
    }
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
