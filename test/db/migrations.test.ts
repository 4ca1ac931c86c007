import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { createDataSource, MIGRATIONS } from '../../src/db/data-source';
import { TEST_DB_DEFAULTS, withDatabase } from '../helpers/database-url';

describe('migrations', () => {
  it('apply on an empty database, undo one by one back to nothing, and apply again', async () => {
    const name = `crm_access_migrations_${randomBytes(4).toString('hex')}`;
    const admin = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const dataSource = createDataSource({ url: withDatabase(process.env.CRM_TEST_SERVER_URL!, name), db: TEST_DB_DEFAULTS });
    const tables = async () =>
      (
        await dataSource.query(
          `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'migrations' ORDER BY 1`,
        )
      ).map((row: { table_name: string }) => row.table_name);
    try {
      await dataSource.initialize();
      expect(await dataSource.runMigrations()).toHaveLength(MIGRATIONS.length);
      expect(await tables()).toEqual(['access_keys', 'audit_events', 'auth_failures', 'key_secret_fingerprint', 'organizations', 'sessions', 'users']);
      for (let i = 0; i < MIGRATIONS.length; i++) await dataSource.undoLastMigration();
      expect(await tables()).toEqual([]);
      expect(await dataSource.runMigrations()).toHaveLength(MIGRATIONS.length);
      expect(await dataSource.showMigrations()).toBe(false);
    } finally {
      await dataSource.destroy();
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
