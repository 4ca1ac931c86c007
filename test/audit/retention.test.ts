import { AuditRetention, type AuditRetentionHooks } from '../../src/audit/audit-retention';
import { createLogger } from '../../src/logger';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

describe('audit retention', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Retained Org');
  });
  /** Lets a batch held open by a test commit; called again after the tests, so a failed test cannot hold one forever. */
  let release = () => {};
  afterAll(async () => {
    release();
    await app.close();
  });

  function retention(hooks: AuditRetentionHooks = {}, days: number | null = 30): AuditRetention {
    return new AuditRetention({
      dataSource: app.dataSource,
      logger: createLogger({ level: 'silent' }),
      settings: { days, batchSize: 1000, pauseMs: 0, firstRunAfterMs: 0, intervalMs: 3_600_000 },
      hooks,
    });
  }

  /** `count` events of the organization, `daysAgo` old. */
  const seed = (count: number, daysAgo: number) =>
    app.dataSource.query(
      `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, created_at)
       SELECT $1, 'LOGIN_SUCCEEDED', $2, 'SESSION', now() - make_interval(days => $3) FROM generate_series(1, $4::int)`,
      [admin.organizationId, admin.id, daysAgo, count],
    );
  const countOlderThan = async (days: number) =>
    (
      await app.dataSource.query(
        `SELECT count(*)::int AS n FROM audit_events WHERE created_at < now() - make_interval(days => $1)`,
        [days],
      )
    )[0].n as number;

  it('deletes old events in batches while requests keep being answered, and keeps the recent ones', async () => {
    await seed(2_500, 400);
    await seed(10, 29);
    const recentBefore = (await countOlderThan(0)) - (await countOlderThan(30));
    const batches: number[] = [];
    let batchOpen!: () => void;
    const firstBatchOpen = new Promise<void>((resolve) => (batchOpen = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const run = retention({
      async batchDeleted(rows) {
        batches.push(rows);
        if (batches.length === 1) {
          batchOpen();
          await released;
        }
      },
    }).runOnce();

    // The first batch's DELETE has run and its transaction is open: its 1,000 rows are locked until it commits.
    await firstBatchOpen;
    const member = await createUser(app, admin, { name: 'Created during retention' });
    const renamed = await app.gql(
      `mutation { updateUser(id: "${member.id}", input: { name: "Renamed during retention" }) { name } }`,
      {
        key: admin.key,
      },
    );
    expect(renamed.body.data).toEqual({ updateUser: { name: 'Renamed during retention' } });
    const read = await app.gql(
      '{ auditEvents(first: 5, filter: { action: USER_UPDATED }) { edges { node { action target { id } } } } }',
      {
        key: admin.key,
      },
    );
    expect(read.body.errors).toBeUndefined();
    expect(read.body.data!.auditEvents.edges[0].node).toEqual({ action: 'USER_UPDATED', target: { id: member.id } });
    // Another instance's run meanwhile finds the lock taken and does nothing.
    expect(await retention().runOnce()).toBeNull();
    expect(batches).toEqual([1000]);

    release();
    expect(await run).toEqual({ deleted: 2_500, batches: 3 });
    expect(batches).toEqual([1000, 1000, 500]);
    expect(await countOlderThan(30)).toBe(0);
    // The recent events, and those the requests wrote during the run, are all there.
    expect((await countOlderThan(0)) - (await countOlderThan(30))).toBe(recentBefore + 4);
  });

  it('deletes nothing when off, and nothing newer than the retention', async () => {
    await seed(3, 400);
    expect(await retention({}, null).runOnce()).toBeNull();
    expect(await countOlderThan(399)).toBe(3);
    expect(await retention({}, 500).runOnce()).toEqual({ deleted: 0, batches: 1 });
    expect(await countOlderThan(399)).toBe(3);
  });

  it('stop() ends a run between batches and waits for the batch in flight', async () => {
    await seed(2_000, 400);
    const before = await countOlderThan(30);
    let stopping!: Promise<void>;
    const worker: AuditRetention = retention({
      async batchDeleted() {
        stopping ??= worker.stop();
      },
    });
    const run = worker.runOnce();
    expect(await run).toEqual({ deleted: 1000, batches: 1 });
    await stopping;
    expect(await countOlderThan(30)).toBe(before - 1000);
    // A stopped worker runs no more.
    worker.start();
    expect(await worker.runOnce()).toEqual({ deleted: 0, batches: 0 });
  });
});
