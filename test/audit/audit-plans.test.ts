import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { indexesOf } from '../helpers/plans';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The audit page's plans, as PostgreSQL makes them for the statement the service sends: an organization whose
 * events are all older than another's many events is the case where walking the primary key backwards (the
 * planner's pick when it assumes an organization's events are spread evenly over the ids) filters out every
 * newer event of the other organization before it finds one of its own.
 */
describe('audit pages walk an index of the organization (and of the filter), never the whole log', () => {
  let app: TestApp;
  let old: TestUser;
  let other: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    old = await createOrganization(app, 'Old Org');
    other = await createOrganization(app, 'Busy Org');
    const member = await createUser(app, old);
    const seed = (org: TestUser, count: number) =>
      app.dataSource.query(
        `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, target_user_id)
         SELECT $1, CASE WHEN i % 100 = 0 THEN 'PASSWORD_CHANGED' ELSE 'ACCESS_KEY_VIEWED' END, $2, 'ACCESS_KEY', $3
           FROM generate_series(1, $4::int) AS i`,
        [org.organizationId, org.id, org === old ? member.id : org.id, count],
      );
    await seed(old, 2_000);
    await seed(other, 40_000);
    await app.dataSource.query('VACUUM ANALYZE audit_events');
  }, 60_000);
  afterAll(() => app.close());

  /** The plans (custom and generic) of the page statement the service ran for `filter`, with the values it sent. */
  async function plansFor(filter: string, values: unknown[]): Promise<string[][]> {
    const before = app.queries.count;
    const response = await app.gql(
      `{ auditEvents(first: 20${filter ? `, filter: ${filter}` : ''}) { edges { node { id } } } }`,
      {
        key: old.key,
      },
    );
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data!.auditEvents.edges).toHaveLength(20);
    const [page] = app.queries.since(before).filter((sql) => /FROM audit_events e/.test(sql));
    const runner = app.dataSource.createQueryRunner();
    try {
      const plans: string[][] = [];
      for (const mode of ['force_custom_plan', 'force_generic_plan']) {
        await runner.query(`SET plan_cache_mode = ${mode}`);
        await runner.query(`PREPARE page AS ${page}`);
        try {
          // EXPLAIN EXECUTE takes no bind parameters: the values (uuids, enum names, numbers) are written as literals.
          const literals = values.map((value) =>
            Array.isArray(value) ? `'{${value.join(',')}}'` : typeof value === 'number' ? value : `'${value}'`,
          );
          const [
            {
              'QUERY PLAN': [plan],
            },
          ] = await runner.query(`EXPLAIN (FORMAT JSON) EXECUTE page(${literals.join(', ')})`);
          plans.push(indexesOf(plan.Plan));
        } finally {
          await runner.query('DEALLOCATE page');
        }
      }
      return plans;
    } finally {
      await runner.query('RESET plan_cache_mode');
      await runner.release();
    }
  }

  it('the first page: the organization index', async () => {
    for (const indexes of await plansFor('', [[old.organizationId], 21]))
      expect(indexes).toEqual(['audit_events_organization_id_idx']);
  });

  it('by action, by actor, by target user: that filter index', async () => {
    const member = (
      await app.dataSource.query(`SELECT id FROM users WHERE organization_id = $1 AND id <> $2`, [
        old.organizationId,
        old.id,
      ])
    )[0].id;
    const cases: Array<[string, unknown[], string]> = [
      [
        '{ action: PASSWORD_CHANGED }',
        [[old.organizationId], 'PASSWORD_CHANGED', 21],
        'audit_events_organization_action_idx',
      ],
      [`{ actorId: "${old.id}" }`, [[old.organizationId], old.id, 21], 'audit_events_organization_actor_idx'],
      [`{ targetUserId: "${member}" }`, [[old.organizationId], member, 21], 'audit_events_organization_target_idx'],
    ];
    for (const [filter, values, index] of cases) {
      for (const indexes of await plansFor(filter, values)) expect(indexes).toEqual([index]);
    }
  });
});
