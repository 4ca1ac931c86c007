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
});
