import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { withDatabase } from './database-url';

/**
 * New databases on the test server that no migration has touched, for tests of what happens before or while
 * migrations run. Call in a `describe`: registers the beforeAll that connects `admin` (a client of the server's
 * `test` database, also for the tests' own queries) and the afterAll that drops every database `create` made.
 * `create` names each `<prefix>_<8 hex digits>` and returns its name and URL.
 */
export function emptyDatabases(prefix: string): {
  admin: Client;
  create(): Promise<{ name: string; url: string }>;
} {
  const admin = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
  const created: string[] = [];
  beforeAll(() => admin.connect());
  afterAll(async () => {
    for (const name of created) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  return {
    admin,
    async create() {
      const name = `${prefix}_${randomBytes(4).toString('hex')}`;
      await admin.query(`CREATE DATABASE ${name}`);
      created.push(name);
      return { name, url: withDatabase(process.env.CRM_TEST_SERVER_URL!, name) };
    },
  };
}
