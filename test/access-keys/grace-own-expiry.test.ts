import type { Clock } from '../../src/access-keys/clock';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { DAY_MS } from '../helpers/test-clock';

const ME = '{ me { id } }';
const RENAME_SELF = 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed After Expiry" }) { id } }';

/**
 * FAILING TEST (no fix in this branch). README, "The access key": "A key replaced with a grace period keeps
 * working until the grace period ends or its own expiry, whichever is first", and "Expiry is decided by the
 * service's clock (...), grace periods and sessions by PostgreSQL's". A regeneration folds the replaced key's
 * own expiry into `previous_key_expires_at` (LEAST(now() + grace, expires_at)), which every check then compares
 * with PostgreSQL's clock: once the key is replaced, its expiry is no longer decided by the service's clock, so
 * a key past its expiry by that clock keeps authenticating and acting for as long as the two clocks differ.
 */
describe("a replaced key's own expiry, by the service's clock", () => {
  let nowMs = Date.now();
  const clock: Clock = { now: () => nowMs };
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ clock, env: { AUTH_FAILURE_LIMIT: '100000' } });
  });
  afterAll(() => app.close());

  it('a key in its grace period stops at its own expiry: no sign-in, no act', async () => {
    nowMs = Date.now();
    const admin: TestUser = await createOrganization(app, 'Own Expiry Clinic');
    const policy = await app.gql('mutation { setAccessKeyPolicy(maxKeyAgeDays: 1) { existingKeysUpdated } }', {
      key: admin.key,
    });
    expect(policy.body.errors).toBeUndefined();
    const member = await createUser(app, admin);
    // Replaced with a week's grace period while it still works: the grace period is capped at its expiry (a day).
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 604800) { previousKeyExpiresAt } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);

    // Two days later by the service's clock: the replaced key is past its own expiry.
    nowMs += 2 * DAY_MS;
    expect((await app.gql(ME, { key: member.key })).status).toBe(401);
    const act = await app.gql(RENAME_SELF, { key: member.key, variables: { id: member.id } });
    expect(act.status).toBe(401);
    const [row] = await app.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).not.toBe('Renamed After Expiry');
  });
});
