import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * `totalCount` is exact (the contract) and, for an organization's whole list or its role/active filters, read
 * from per-organization counts that triggers keep in the same transaction as each change of a user, so it costs
 * the same at 100 or 100,000 users (bench:scale); a search still counts the matching rows.
 */
describe('users totalCount', () => {
  let app: TestApp;
  let admin: TestUser;
  let other: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Counted Org');
    other = await createOrganization(app, 'Other Org');
    await createUser(app, other);
  });
  afterAll(() => app.close());

  const FILTERS: Array<{ filter: string; where: string; values: unknown[] }> = [
    { filter: '', where: 'true', values: [] },
    { filter: 'filter: { role: MEMBER }', where: "role = 'MEMBER'", values: [] },
    { filter: 'filter: { role: ADMIN }', where: "role = 'ADMIN'", values: [] },
    { filter: 'filter: { isActive: false }', where: 'NOT is_active', values: [] },
    { filter: 'filter: { role: MANAGER, isActive: true }', where: "role = 'MANAGER' AND is_active", values: [] },
    {
      filter: 'filter: { search: "counted" }',
      where: "(name ILIKE '%counted%' OR email ILIKE '%counted%')",
      values: [],
    },
  ];

  /** Every filter's totalCount through the API next to count(*) of the rows, and the statements the API ran. */
  async function counts(): Promise<{ api: number[]; rows: number[]; statements: string[] }> {
    const api: number[] = [];
    const rows: number[] = [];
    const statements: string[] = [];
    for (const { filter, where } of FILTERS) {
      const before = app.queries.count;
      const response = await app.gql(`{ users(first: 0${filter ? `, ${filter}` : ''}) { totalCount } }`, {
        key: admin.key,
      });
      expect(response.body.errors).toBeUndefined();
      statements.push(...app.queries.since(before));
      api.push(response.body.data!.users.totalCount);
      const [{ n }] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM users WHERE organization_id = $1 AND ${where}`,
        [admin.organizationId],
      );
      rows.push(n);
    }
    return { api, rows, statements };
  }

  it('stays exact through creations, role changes, deactivation and reactivation', async () => {
    const created = [];
    for (const [i, role] of [Role.MEMBER, Role.MEMBER, Role.MANAGER, Role.ADMIN, Role.MEMBER].entries()) {
      created.push(await createUser(app, admin, { role, name: `Counted ${i}` }));
    }
    let { api, rows } = await counts();
    expect(api).toEqual(rows);
    expect(api[0]).toBe(6);

    const change = async (query: string) => {
      const response = await app.gql(query, { key: admin.key });
      expect(response.body.errors).toBeUndefined();
    };
    await change(`mutation { setUserRole(id: "${created[0].id}", role: MANAGER) { id } }`);
    await change(`mutation { deactivateUser(id: "${created[1].id}") { id } }`);
    await change(`mutation { deactivateUser(id: "${created[2].id}") { id } }`);
    await change(`mutation { reactivateUser(id: "${created[2].id}") { id } }`);
    await change(`mutation { updateUser(id: "${created[4].id}", input: { name: "Renamed" }) { id } }`);
    ({ api, rows } = await counts());
    expect(api).toEqual(rows);
    expect(api.slice(0, 5)).toEqual([6, 2, 2, 1, 2]);
  });

  it('counts a statement that inserts, changes or deletes many users at once, and a deleted organization', async () => {
    const bulk = await createOrganization(app, 'Bulk Org');
    const countsOf = async (organizationId: string) =>
      (
        await app.dataSource.query(
          `SELECT role, is_active, users FROM organization_user_counts WHERE organization_id = $1 AND users <> 0 ORDER BY 1, 2`,
          [organizationId],
        )
      ).map((row: { role: string; is_active: boolean; users: number }) => `${row.role} ${row.is_active} ${row.users}`);
    await app.dataSource.query(
      `INSERT INTO users (organization_id, email, name, role)
       SELECT $1, 'bulk-' || i || '@bulk.example', 'Bulk ' || i, CASE WHEN i % 3 = 0 THEN 'MANAGER' ELSE 'MEMBER' END
         FROM generate_series(1, 3000) AS i`,
      [bulk.organizationId],
    );
    expect(await countsOf(bulk.organizationId)).toEqual(['ADMIN true 1', 'MANAGER true 1000', 'MEMBER true 2000']);
    await app.dataSource.query(
      `UPDATE users SET is_active = false WHERE organization_id = $1 AND role = 'MEMBER' AND name LIKE 'Bulk 1%'`,
      [bulk.organizationId],
    );
    await app.dataSource.query(`UPDATE users SET name = name || ' (renamed)' WHERE organization_id = $1`, [
      bulk.organizationId,
    ]);
    await app.dataSource.query(
      `DELETE FROM users WHERE organization_id = $1 AND role = 'MANAGER' AND name LIKE 'Bulk 2%'`,
      [bulk.organizationId],
    );
    const [{ rows }] = await app.dataSource.query(
      `SELECT json_agg(r ORDER BY r) AS rows FROM (
         SELECT role || ' ' || is_active || ' ' || count(*) AS r FROM users WHERE organization_id = $1 GROUP BY role, is_active) AS c`,
      [bulk.organizationId],
    );
    expect(await countsOf(bulk.organizationId)).toEqual(rows);
    await app.dataSource.query(`DELETE FROM organizations WHERE id = $1`, [bulk.organizationId]);
    expect(await countsOf(bulk.organizationId)).toEqual([]);
  });

  it('reads the whole list and the role/active filters from the counts, not by counting rows', async () => {
    const { statements } = await counts();
    const counting = statements.filter((sql) => /count\(\*\)/.test(sql));
    const fromCounts = statements.filter((sql) => /organization_user_counts/.test(sql));
    expect(fromCounts).toHaveLength(FILTERS.length - 1);
    // Only the search counts rows.
    expect(counting).toHaveLength(1);
    expect(counting[0]).toMatch(/ILIKE/);
  });

  it('a member, who sees only themselves, counts 1', async () => {
    const member = await createUser(app, admin, { role: Role.MEMBER });
    const response = await app.gql('{ users(first: 0) { totalCount } }', { key: member.key });
    expect(response.body.data!.users.totalCount).toBe(1);
  });
});
