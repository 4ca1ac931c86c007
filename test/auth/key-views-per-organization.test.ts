import { Client } from 'pg';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { waitForBlockedStatement, waitForLockWaiters } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';

const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';
const PAGE = '{ users(first: 10) { edges { node { id accessKey } } } }';

/**
 * One organization's long act (a key policy rewriting every key of a large organization, or its deactivation)
 * holds back that organization's reveals only. Key views are written one batch at a time per organization (KeyViewWriter), so an act that holds one
 * organization's row FOR UPDATE for a long time (a key policy rewriting the expiry of every key of a large
 * organization, or the organization's deactivation) holds back that organization's reveals only. Here a test
 * connection holds organization A's row as those acts do: A's reveal waits for it, and organization B's reveal
 * and page of keys, sent after it, are answered (and audited) while A's still waits; once A's row is let go,
 * A's reveal is answered too. With one writer for every organization B's views queued behind A's waiting batch
 * until its statement timed out (a 503 for A, then B's answer).
 */
describe("one organization's reveals while another organization's rows are held", () => {
  let app: TestApp;
  let adminA: TestUser;
  let memberA: TestUser;
  let adminB: TestUser;
  let memberB: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    adminA = await createOrganization(app, 'Views Locked Org', TEST_PASSWORD);
    memberA = await createUser(app, adminA);
    adminB = await createOrganization(app, 'Views Free Org', TEST_PASSWORD);
    memberB = await createUser(app, adminB);
  });
  afterAll(() => app.close());

  async function viewsBy(actorId: string): Promise<number> {
    const rows: Array<{ n: number }> = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND actor_user_id = $1`,
      [actorId],
    );
    return rows[0].n;
  }

  it("answers B's reveals while A's row is held, and A's once it is let go", async () => {
    const before = { a: await viewsBy(adminA.id), b: await viewsBy(adminB.id) };
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [adminA.organizationId]);
      let settledA = false;
      const revealA = app
        .gql<{ user: { accessKey: string } }>(REVEAL, { key: adminA.key, variables: { id: memberA.id } })
        .finally(() => (settledA = true));
      await waitForLockWaiters(app, 1);

      const revealB = await app.gql<{ user: { accessKey: string } }>(REVEAL, {
        key: adminB.key,
        variables: { id: memberB.id },
      });
      const pageB = await app.gql<{ users: { edges: Array<{ node: { id: string; accessKey: string } }> } }>(PAGE, {
        key: adminB.key,
      });
      expect(settledA).toBe(false);
      expect(revealB.status).toBe(200);
      expect(revealB.body.errors).toBeUndefined();
      expect(revealB.body.data?.user.accessKey).toBe(memberB.key);
      expect(pageB.body.errors).toBeUndefined();
      const keys = new Map(pageB.body.data!.users.edges.map(({ node }) => [node.id, node.accessKey]));
      expect(keys.get(memberB.id)).toBe(memberB.key);
      expect(keys.get(adminB.id)).toBe(adminB.key);
      expect(await viewsBy(adminB.id)).toBe(before.b + 1 + keys.size);
      expect(await viewsBy(adminA.id)).toBe(before.a);

      await holder.query('COMMIT');
      const answerA = await revealA;
      expect(answerA.status).toBe(200);
      expect(answerA.body.errors).toBeUndefined();
      expect(answerA.body.data?.user.accessKey).toBe(memberA.key);
      expect(await viewsBy(adminA.id)).toBe(before.a + 1);
    } finally {
      await holder.end();
    }
  });

  /**
   * The write of key uses (AccessKeyService.flushUse) locks the due key rows of every organization in user id
   * order. Here organization A's key row, later in that order, is held as a key policy's rewrite holds it; B's
   * key, earlier, was used too. The write skips A's row, writes B's, then waits for A's row alone: it holds no
   * lock of B's while A's act runs, and B's reveal (which locks B's key row FOR SHARE) is answered at once.
   * When the write waited for A's row in the statement that locked B's, B's row stayed locked FOR NO KEY UPDATE
   * and unwritten meanwhile, and B's reveal waited behind it until its statement timed out.
   */
  it("the write of key uses writes the other rows at once and waits for a row another organization's act holds alone", async () => {
    const users = [
      await createUser(app, adminA, { role: Role.ADMIN }),
      await createUser(app, adminB, { role: Role.ADMIN }),
    ];
    const [earlier, later] = users.sort((x, y) => (x.id < y.id ? -1 : 1));
    const target = await createUser(app, earlier);
    const lastUsed = async (user: TestUser): Promise<Date | null> =>
      (await app.dataSource.query('SELECT last_used_at FROM access_keys WHERE user_id = $1', [user.id]))[0]
        .last_used_at;
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('UPDATE access_keys SET expires_at = expires_at WHERE user_id = $1', [later.id]);
      const [{ pid }] = (await holder.query('SELECT pg_backend_pid() AS pid')).rows;
      for (const user of [earlier, later])
        app.services.accessKeys.markUsed(app.keyCrypto.digest(user.key).toString('base64'));
      let flushed = false;
      const flushing = app.services.accessKeys.flushUse().then(() => (flushed = true));
      await waitForBlockedStatement(app, { by: pid });
      expect(await lastUsed(earlier)).not.toBeNull();
      expect(await lastUsed(later)).toBeNull();

      const reveal = await app.gql<{ user: { accessKey: string } }>(REVEAL, {
        key: earlier.key,
        variables: { id: target.id },
      });
      expect(reveal.body.errors).toBeUndefined();
      expect(reveal.body.data?.user.accessKey).toBe(target.key);
      expect(flushed).toBe(false);

      await holder.query('COMMIT');
      await flushing;
      expect(await lastUsed(later)).not.toBeNull();
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  });
});
