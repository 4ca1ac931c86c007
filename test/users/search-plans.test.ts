import type { Pool } from 'pg';

import { createOrganization, type TestUser } from '../factories/organizations';
import { indexesOf } from '../helpers/plans';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * A search by part of a name or an email in a large organization is served by the trigram indexes (migration
 * ScaleIndexes), and planned for its own pattern every time: as a prepared statement, PostgreSQL may settle on a
 * generic plan after five runs, which cannot know whether the part is rare and walks the whole list instead.
 */
describe('users search at scale', () => {
  let app: TestApp;
  let admin: TestUser;
  const sent: Array<{ text: string; name?: string }> = [];

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Searched Org');
    await app.dataSource.query(
      `INSERT INTO users (organization_id, email, name, role)
       SELECT $1, 'person.' || i || '@searched.example', 'Person ' || substr(md5(i::text), 1, 8), 'MEMBER'
         FROM generate_series(1, 20000) AS i`,
      [admin.organizationId],
    );
    await app.dataSource.query('VACUUM ANALYZE users');
    const pool = (app.dataSource.driver as unknown as { master: Pool }).master;
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: unknown }).query = (config: unknown, ...rest: unknown[]) => {
      if (typeof config === 'object' && config !== null && 'text' in config)
        sent.push(config as { text: string; name?: string });
      return query(config, ...rest);
    };
  }, 60_000);
  afterAll(() => app.close());

  const part = (i: number) =>
    app.dataSource.query(`SELECT substr(md5($1::text), 2, 6) AS part`, [i]).then(([row]) => row.part as string);

  it('sends every search (page and count) as a statement planned for its pattern, not a prepared one', async () => {
    sent.length = 0;
    for (let i = 1; i <= 8; i++) {
      const search = await part(i * 1000);
      const response = await app.gql(
        `{ users(first: 10, filter: { search: "${search}" }) { totalCount edges { node { name } } } }`,
        { key: admin.key },
      );
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data!.users.edges.map((edge: { node: { name: string } }) => edge.node.name)).toContain(
        `Person ${(await app.dataSource.query(`SELECT substr(md5($1::text), 1, 8) AS p`, [i * 1000]))[0].p}`,
      );
    }
    const searches = sent.filter((config) => /ILIKE/.test(config.text));
    expect(searches).toHaveLength(16);
    expect(searches.filter((config) => config.name !== undefined)).toEqual([]);
    // The lists without a search stay prepared statements.
    sent.length = 0;
    await app.gql('{ users(first: 10) { edges { node { id } } } }', { key: admin.key });
    expect(sent.filter((config) => /FROM users u/.test(config.text)).every((config) => config.name)).toBe(true);
  });

  it('finds a rare part of a name or an email through the trigram indexes', async () => {
    sent.length = 0;
    const search = await part(12345);
    await app.gql(`{ users(first: 10, filter: { search: "${search}" }) { edges { node { id } } } }`, {
      key: admin.key,
    });
    const [page] = sent.filter((config) => /ILIKE/.test(config.text));
    const pattern = `'%${search}%'`;
    const literals = [`'${admin.organizationId}'`, pattern, pattern, '11'];
    const explained = page.text.replace(/\$(\d+)/g, (_, n: string) => literals[Number(n) - 1]);
    const [
      {
        'QUERY PLAN': [plan],
      },
    ] = await app.dataSource.query(`EXPLAIN (FORMAT JSON) ${explained}`);
    expect(indexesOf(plan.Plan)).toEqual(expect.arrayContaining(['users_name_trgm_idx', 'users_email_trgm_idx']));
  });
});
