import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { NormalizeEmails1764513000000 } from '../../migrations/1764513000000-NormalizeEmails';
import { createDataSource, MIGRATIONS } from '../../src/db/data-source';
import { TEST_DB_DEFAULTS, withDatabase } from '../helpers/database-url';
import { createTestDatabase } from '../helpers/test-app';

describe('migrations', () => {
  it('apply on an empty database, undo one by one back to nothing, and apply again', async () => {
    const name = `crm_access_migrations_${randomBytes(4).toString('hex')}`;
    const admin = new Client({ connectionString: process.env.CRM_TEST_SERVER_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const dataSource = createDataSource({
      url: withDatabase(process.env.CRM_TEST_SERVER_URL!, name),
      db: TEST_DB_DEFAULTS,
    });
    const tables = async () =>
      (
        await dataSource.query(
          `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'migrations' ORDER BY 1`,
        )
      ).map((row: { table_name: string }) => row.table_name);
    try {
      await dataSource.initialize();
      expect(await dataSource.runMigrations()).toHaveLength(MIGRATIONS.length);
      expect(await tables()).toEqual([
        'access_keys',
        'audit_events',
        'auth_failures',
        'key_secret_fingerprint',
        'organization_user_counts',
        'organizations',
        'secret_scanning_messages',
        'sessions',
        'users',
      ]);
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

describe('NormalizeEmails migration', () => {
  it('rewrites emails into their normal form, and leaves look-alike duplicates for an admin to settle', async () => {
    const database = await createTestDatabase();
    const client = new Client({ connectionString: database.url });
    await client.connect();
    const dataSource = createDataSource({ url: database.url, db: TEST_DB_DEFAULTS });
    try {
      const [{ id: organizationId }] = (
        await client.query(`INSERT INTO organizations (name) VALUES ('Old data') RETURNING id`)
      ).rows;
      const insert = async (email: string) =>
        (
          await client.query(
            `INSERT INTO users (organization_id, email, name, role) VALUES ($1, $2, 'Old', 'MEMBER') RETURNING id`,
            [organizationId, email],
          )
        ).rows[0].id as string;
      const mixedCase = await insert('Ada.Lovelace@Example.TEST');
      const decomposed = await insert('Jose\u0301@example.test');
      const fullwidth = await insert('\uff42\uff4f\uff42@example.test');
      const twinA = await insert('ren\u00e9@example.test');
      const twinB = await insert('rene\u0301@example.test');
      const alreadyNormal = await insert('plain@example.test');

      await dataSource.initialize();
      const runner = dataSource.createQueryRunner();
      try {
        await new NormalizeEmails1764513000000().up(runner);
        await new NormalizeEmails1764513000000().up(runner);
      } finally {
        await runner.release();
      }

      const emails = new Map<string, string>(
        (await client.query(`SELECT id, email FROM users WHERE organization_id = $1`, [organizationId])).rows.map(
          (row) => [row.id, row.email],
        ),
      );
      expect(emails.get(mixedCase)).toBe('ada.lovelace@example.test');
      expect(emails.get(decomposed)).toBe('jos\u00e9@example.test');
      expect(emails.get(fullwidth)).toBe('bob@example.test');
      expect(emails.get(twinA)).toBe('ren\u00e9@example.test');
      expect(emails.get(twinB)).toBe('rene\u0301@example.test');
      expect(emails.get(alreadyNormal)).toBe('plain@example.test');
    } finally {
      if (dataSource.isInitialized) await dataSource.destroy();
      await client.end();
      await database.drop();
    }
  });
});
