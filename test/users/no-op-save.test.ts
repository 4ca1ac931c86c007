import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const UPDATE = 'mutation ($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id email name } }';

/** A save that changes nothing writes nothing: no row version, no USER_UPDATED event in the audit log. */
describe('a no-op save', () => {
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'No-op Save Org');
    member = await createUser(app, admin, { name: 'Same Name' });
  });
  afterAll(() => app.close());

  async function state(): Promise<{ updatedAt: string; events: number }> {
    const [row] = await app.dataSource.query(`SELECT updated_at::text AS "updatedAt" FROM users WHERE id = $1`, [
      member.id,
    ]);
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE target_user_id = $1`,
      [member.id],
    );
    return { updatedAt: row.updatedAt, events: n };
  }

  it.each([
    ['an empty input', {}],
    ['the same name', { name: 'Same Name' }],
    ['the same email, written in another case', { email: 'EMAIL' }],
    ['the same name and email', { name: 'Same Name', email: 'EMAIL' }],
  ])(
    '%s: answers the user, writes no row version and no audit event',
    async (_label, input: Record<string, string>) => {
      const before = await state();
      const sent = { ...input, ...(input.email ? { email: member.email.toUpperCase() } : {}) };
      // A member may change their own name, not their email (sending it, even unchanged, is FORBIDDEN).
      for (const key of input.email ? [admin.key] : [admin.key, member.key]) {
        const response = await app.gql(UPDATE, { key, variables: { id: member.id, input: sent } });
        expect(response.body.errors).toBeUndefined();
        expect(response.body.data!.updateUser).toEqual({ id: member.id, email: member.email, name: 'Same Name' });
      }
      expect(await state()).toEqual(before);
    },
  );

  it('a real change still writes the row and one USER_UPDATED event', async () => {
    const before = await state();
    const response = await app.gql(UPDATE, {
      key: admin.key,
      variables: { id: member.id, input: { name: 'Same Name', email: member.email.replace('@', '+new@') } },
    });
    expect(response.body.errors).toBeUndefined();
    const after = await state();
    expect(after.updatedAt).not.toBe(before.updatedAt);
    expect(after.events).toBe(before.events + 1);
    const [event] = await app.dataSource.query(
      `SELECT action FROM audit_events WHERE target_user_id = $1 ORDER BY id DESC LIMIT 1`,
      [member.id],
    );
    expect(event.action).toBe('USER_UPDATED');
  });
});
