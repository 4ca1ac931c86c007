import { randomUUID } from 'node:crypto';

import { Client } from 'pg';

import { integerArrayLiteral, uuidArrayLiteral } from '../../src/db/array-literal';

describe('array literals for uuid[] and int[] parameters', () => {
  let client: Client;

  beforeAll(async () => {
    client = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
    await client.connect();
  });
  afterAll(() => client.end());

  it('PostgreSQL reads them as the arrays pg would have sent, element for element and in order', async () => {
    const ids = [randomUUID(), randomUUID().toUpperCase(), randomUUID()];
    const numbers = [0, 7, -3, 2_147_483_647];
    const [mine] = (
      await client.query(`SELECT $1::uuid[]::text[] AS ids, $2::int[] AS numbers`, [
        uuidArrayLiteral(ids),
        integerArrayLiteral(numbers),
      ])
    ).rows;
    const [pgs] = (await client.query(`SELECT $1::uuid[]::text[] AS ids, $2::int[] AS numbers`, [ids, numbers])).rows;
    expect(mine).toEqual(pgs);
    expect(mine.ids).toEqual(ids.map((id) => id.toLowerCase()));
    const [empty] = (
      await client.query(`SELECT cardinality($1::uuid[]) AS ids, cardinality($2::int[]) AS numbers`, [
        uuidArrayLiteral([]),
        integerArrayLiteral([]),
      ])
    ).rows;
    expect(empty).toEqual({ ids: 0, numbers: 0 });
  });

  it('refuses an element that would change the array: not a uuid, not an integer', () => {
    const id = randomUUID();
    for (const bad of [`${id},${id}`, `${id}}`, '', 'NULL', `"${id}"`, `${id} `]) {
      expect(() => uuidArrayLiteral([id, bad])).toThrow('element 1 is not a uuid');
    }
    for (const bad of [1.5, NaN, Infinity, 2 ** 53]) {
      expect(() => integerArrayLiteral([1, bad])).toThrow('element 1 is not an integer');
    }
  });
  it('runs of one id (a page of one organization, then another), in any case, read back as pg sends them', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const ids = [
      ...Array.from({ length: 50 }, () => a),
      a.toUpperCase(),
      ...Array.from({ length: 49 }, () => b),
      b.toUpperCase(),
      b,
    ];
    const [mine] = (await client.query(`SELECT $1::uuid[]::text[] AS ids`, [uuidArrayLiteral(ids)])).rows;
    const [pgs] = (await client.query(`SELECT $1::uuid[]::text[] AS ids`, [ids])).rows;
    expect(mine.ids).toEqual(pgs.ids);
    expect(mine.ids).toHaveLength(102);
    expect(mine.ids).toEqual(ids.map((id) => id.toLowerCase()));
    const [one] = (await client.query(`SELECT $1::uuid[]::text[] AS ids`, [uuidArrayLiteral([b])])).rows;
    expect(one.ids).toEqual([b]);
  });

  it('checks the first element of every run: a bad element after a run, or a run of bad ones, is refused', () => {
    const id = randomUUID();
    expect(() => uuidArrayLiteral([id, id, id, `${id},${id}`])).toThrow('element 3 is not a uuid');
    expect(() => uuidArrayLiteral(['NULL', 'NULL', id])).toThrow('element 0 is not a uuid');
    expect(() => uuidArrayLiteral([id, id.toUpperCase(), `${id.toUpperCase()}}`])).toThrow('element 2 is not a uuid');
    expect(() => uuidArrayLiteral([id, `${id}\n`])).toThrow('element 1 is not a uuid');
  });
});
