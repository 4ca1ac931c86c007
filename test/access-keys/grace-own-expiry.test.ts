import type { Clock } from '../../src/access-keys/clock';
import type { PauseHooks } from '../../src/authorization/authority';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { DAY_MS } from '../helpers/test-clock';

const ME = '{ me { id } }';
const RENAME_SELF = 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed After Expiry" }) { id } }';

/**
 * README, "The access key": "A key replaced with a grace period keeps working until the grace period ends or its
 * own expiry, whichever is first", and "Expiry is decided by the service's clock (...), grace periods and
 * sessions by PostgreSQL's". A regeneration used to fold the replaced key's own expiry into
 * `previous_key_expires_at` (LEAST(now() + grace, expires_at)), which every check compares with PostgreSQL's
 * clock: once replaced, a key's expiry was no longer decided by the service's clock, so with the two clocks apart
 * a key past its expiry kept authenticating and acting. Its own expiry is now kept apart
 * (`previous_key_own_expires_at`) and checked with the service's clock, cached or not, at the act too.
 */
describe("a replaced key's own expiry, by the service's clock", () => {
  let nowMs = Date.now();
  const clock: Clock = { now: () => nowMs };
  let app: TestApp;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ clock, hooks, env: { AUTH_FAILURE_LIMIT: '100000' } });
  });
  afterEach(() => {
    delete hooks.beforeAuthorityCheck;
  });
  afterAll(() => app.close());

  /** An organization whose keys expire a day after issue, and a member whose key was replaced with a week's grace. */
  async function replacedKeyOfADay(name: string): Promise<TestUser> {
    nowMs = Date.now();
    const admin: TestUser = await createOrganization(app, name);
    const policy = await app.gql('mutation { setAccessKeyPolicy(maxKeyAgeDays: 1) { existingKeysUpdated } }', {
      key: admin.key,
    });
    expect(policy.body.errors).toBeUndefined();
    const member = await createUser(app, admin);
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 604800) { previousKeyExpiresAt } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    return member;
  }

  it('a key in its grace period stops at its own expiry: no sign-in, no act', async () => {
    // Replaced with a week's grace period while it still works: the grace period is capped at its expiry (a day).
    const member = await replacedKeyOfADay('Own Expiry Clinic');
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);

    // Two days later by the service's clock: the replaced key is past its own expiry.
    nowMs += 2 * DAY_MS;
    expect((await app.gql(ME, { key: member.key })).status).toBe(401);
    const act = await app.gql(RENAME_SELF, { key: member.key, variables: { id: member.id } });
    expect(act.status).toBe(401);
    const [row] = await app.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).not.toBe('Renamed After Expiry');
  });

  it('a replaced key whose own expiry passes while its act runs: UNAUTHENTICATED, nothing written', async () => {
    const member = await replacedKeyOfADay('Own Expiry In Flight Clinic');
    // Authenticated (and cached) while it works; the service's clock passes its expiry before the act's check.
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId === member.id) nowMs += 2 * DAY_MS;
    };
    const act = await app.gql(RENAME_SELF, { key: member.key, variables: { id: member.id } });
    expect(act.body.errors?.[0]?.extensions).toMatchObject({
      code: 'UNAUTHENTICATED',
      reason: 'INVALID_CREDENTIALS',
    });
    const [row] = await app.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
    expect(row.name).not.toBe('Renamed After Expiry');
  });

  it('a key policy applied to existing keys gives a replaced key its age by the service clock too', async () => {
    nowMs = Date.now();
    const admin: TestUser = await createOrganization(app, 'Own Expiry Policy Clinic');
    const member = await createUser(app, admin);
    // No policy when it was issued; replaced with a week's grace period, then keys older than a day expire.
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 604800) { accessKey } }',
      { key: admin.key, variables: { id: member.id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    const applied = await app.gql(
      'mutation { setAccessKeyPolicy(maxKeyAgeDays: 1, applyToExistingKeys: true) { existingKeysUpdated } }',
      { key: admin.key },
    );
    expect(applied.body.errors).toBeUndefined();
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);

    nowMs += 2 * DAY_MS;
    // Two days old by the service's clock, past the policy's age, although its grace period runs by PostgreSQL's.
    expect((await app.gql(ME, { key: member.key })).status).toBe(401);
  });
});
