import { Client } from 'pg';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { until } from '../helpers/until';

const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';

/**
 * A batch of key views confirms each principal once (Authority.insertIfConfirmed): the requests of one key share
 * the principal its authentication cached. Here one batch holds three requests of one admin's key, one of the
 * same admin's session and one of another admin's key, and the first admin is demoted after they authenticated
 * and before the batch locks: every request of the demoted admin, whichever credential, is refused with no key
 * and no view, and the other admin's, between them in the batch, reveals. The batch forms behind a first reveal
 * whose statement waits for the organization row, held FOR UPDATE by a test connection that then demotes.
 */
describe('a batch of key views that holds one principal several times', () => {
  let app: TestApp;
  let demoted: TestUser;
  let other: TestUser;
  let target: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    demoted = await createOrganization(app, 'Shared Principal Org', TEST_PASSWORD);
    other = await createUser(app, demoted, { role: Role.ADMIN });
    target = await createUser(app, demoted);
  });
  afterAll(() => app.close());

  async function viewsBy(actorId: string): Promise<number> {
    const rows: Array<{ n: string }> = await app.dataSource.query(
      `SELECT count(*) AS n FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1`,
      [actorId],
    );
    return Number(rows[0].n);
  }

  it("refuses every request of the demoted admin's principals and reveals the other admin's", async () => {
    const before = { demoted: await viewsBy(demoted.id), other: await viewsBy(other.id) };
    const session = { authorization: `Bearer ${await login(app, demoted)}` };
    // Authenticated (and cached) before the demotion.
    for (const options of [{ key: demoted.key }, { headers: session }, { key: other.key }])
      expect((await app.gql('{ me { id } }', options)).body.errors).toBeUndefined();
    const reveal = (options: { key?: string; headers?: Record<string, string> }) =>
      app.gql<{ user: { accessKey: string | null } | null }>(REVEAL, { ...options, variables: { id: target.id } });
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    let answers: Array<Awaited<ReturnType<typeof reveal>>>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [demoted.organizationId]);
      const first = reveal({ key: other.key });
      await waitForLockWaiters(app, 1);
      const batch = [
        // The other admin's request last: its principal is the third, its request the fifth.
        reveal({ key: demoted.key }),
        reveal({ headers: session }),
        reveal({ key: demoted.key }),
        reveal({ key: demoted.key }),
        reveal({ key: other.key }),
      ];
      await until(() => app.services.audit.keyViews.waiting === batch.length);
      await holder.query(`UPDATE users SET role = 'MEMBER' WHERE id = $1`, [demoted.id]);
      await holder.query('COMMIT');
      answers = await Promise.all([first, ...batch]);
    } finally {
      await holder.end();
    }
    const keys = answers.map((answer) => answer.body.data?.user?.accessKey ?? null);
    expect(keys).toEqual([target.key, null, null, null, null, target.key]);
    for (const i of [1, 2, 3, 4]) expect(answers[i].body.errors?.length).toBeGreaterThan(0);
    expect(await viewsBy(demoted.id)).toBe(before.demoted);
    expect(await viewsBy(other.id)).toBe(before.other + 2);
  });
});
