import { abilityFor } from '../../src/authorization/abilities';
import type { Actor } from '../../src/request/actor';
import { GrantedChecks } from '../../src/request/granted-checks';
import { User } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The views' writer takes a grant the request already made (GrantedChecks, a page's `read accessKey`) in place
 * of asking CASL again (KeyViewWriter, seesEveryKey). A grant is for the user object it was made on: a target
 * naming another user, of another organization, with a granted object as its `subject` must be judged for
 * itself, and refused.
 */
describe("the views' writer reuses a grant only for the user it was made on", () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;
  let stranger: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Grant Org');
    member = await createUser(app, admin);
    const outsider = await createOrganization(app, 'Stranger Org');
    stranger = await createUser(app, outsider);
  });
  afterAll(() => app.close());

  /** The admin as a request of theirs sees them, with `read accessKey` granted on the member's row object. */
  async function adminWithGrantOnMember(requestId: string): Promise<{ actor: Actor; granted: User }> {
    const auth = await app.services.authenticator.authenticate(
      { headers: { 'x-access-key': admin.key }, rawHeaders: ['X-Access-Key', admin.key] },
      '127.0.0.7',
    );
    if (!auth.ok || !auth.principal) throw new Error('the admin did not authenticate');
    const actor: Actor = { principal: auth.principal, ability: abilityFor(auth.principal), requestId, ip: '127.0.0.7' };
    const granted = Object.assign(new User(), { id: member.id, organizationId: admin.organizationId });
    actor.grants = new GrantedChecks();
    expect(actor.grants.canEach(actor.ability, 'read', [granted], 'accessKey')).toEqual([granted]);
    return { actor, granted };
  }

  async function ciphertextOf(user: TestUser): Promise<Buffer> {
    const [{ key_ciphertext }] = await app.dataSource.query(
      'SELECT key_ciphertext FROM access_keys WHERE user_id = $1',
      [user.id],
    );
    return key_ciphertext;
  }

  async function viewsOf(requestId: string): Promise<Array<{ target_user_id: string; organization_id: string }>> {
    return app.dataSource.query(
      `SELECT target_user_id, organization_id FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND request_id = $1`,
      [requestId],
    );
  }

  it("refuses another organization's user whose target carries a granted object, and records nothing", async () => {
    const { actor, granted } = await adminWithGrantOnMember('grant-misused');
    const recording = app.services.audit.recordKeyViews(actor, [
      {
        userId: stranger.id,
        organizationId: stranger.organizationId,
        keyCiphertext: await ciphertextOf(stranger),
        subject: granted,
      },
    ]);
    await expect(recording).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await viewsOf('grant-misused')).toEqual([]);
  });

  it('takes the grant for the user it was made on: the view is recorded', async () => {
    const { actor, granted } = await adminWithGrantOnMember('grant-used');
    const replaced = await app.services.audit.recordKeyViews(actor, [
      {
        userId: member.id,
        organizationId: admin.organizationId,
        keyCiphertext: await ciphertextOf(member),
        subject: granted,
      },
    ]);
    expect(replaced.size).toBe(0);
    expect(await viewsOf('grant-used')).toEqual([{ target_user_id: member.id, organization_id: admin.organizationId }]);
  });
});
