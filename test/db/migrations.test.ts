import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { NormalizeEmails1764513000000 } from '../../migrations/1764513000000-NormalizeEmails';
import { EmailDecodedLabelsFolded1764800000200 } from '../../migrations/1764800000200-EmailDecodedLabelsFolded';
import { EmailDomainsMappedByUts461764800000300 } from '../../migrations/1764800000300-EmailDomainsMappedByUts46';
import { createDataSource, MIGRATIONS } from '../../src/db/data-source';
import { TEST_DB_DEFAULTS, withDatabase } from '../helpers/database-url';
import { waitForBlockedStatement } from '../helpers/locks';
import { createTestDatabase, type TestApp } from '../helpers/test-app';

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

describe('email migrations', () => {
  it.each<[string, typeof NormalizeEmails1764513000000, Array<[string, string]>]>([
    [
      'NormalizeEmails',
      NormalizeEmails1764513000000,
      [
        ['Ada.Lovelace@Example.TEST', 'ada.lovelace@example.test'],
        ['Jose\u0301@example.test', 'jos\u00e9@example.test'],
        ['\uff42\uff4f\uff42@example.test', 'bob@example.test'],
        ['ren\u00e9@example.test', 'ren\u00e9@example.test'],
        ['rene\u0301@example.test', 'rene\u0301@example.test'],
        ['plain@example.test', 'plain@example.test'],
      ],
    ],
    [
      // What updateUser stored before decoded labels were folded and the ideographic full stop was a dot.
      'EmailDecodedLabelsFolded',
      EmailDecodedLabelsFolded1764800000200,
      [
        ['a@\u03bf\u03b4\u03bf\u03c2.example', 'a@\u03bf\u03b4\u03bf\u03c3.example'],
        ['b@x\u3002y.example', 'b@x.y.example'],
        ['c@\u13a0.example', 'c@\uab70.example'],
        ['d@xn--zz.example', 'd@xn--zz.example'],
        ['e@\u03b1\u03c2.example', 'e@\u03b1\u03c2.example'],
        ['e@\u03b1\u03c3.example', 'e@\u03b1\u03c3.example'],
      ],
    ],
    [
      // What was stored before domains were mapped as UTS 46 maps them (one DNS name, two stored forms).
      'EmailDomainsMappedByUts46',
      EmailDomainsMappedByUts461764800000300,
      [
        ['a@\u1fb3.example', 'a@\u03b1\u03b9.example'],
        ['b@\u1c80.example', 'b@\u0432.example'],
        ['c@\u00df.example', 'c@\u00df.example'],
        ['d@xn--zz.example', 'd@xn--zz.example'],
        ['e@1.2', 'e@1.2'],
        ['f@\u03b1\u03b9.example', 'f@\u03b1\u03b9.example'],
        ['f@\u1fb3.example', 'f@\u1fb3.example'],
      ],
    ],
  ])('%s rewrites emails into their normal form, twice, leaving twins to an admin', async (_name, Migration, rows) => {
    const database = await createTestDatabase();
    const client = new Client({ connectionString: database.url });
    await client.connect();
    const dataSource = createDataSource({ url: database.url, db: TEST_DB_DEFAULTS });
    try {
      const [{ id: organizationId }] = (
        await client.query(`INSERT INTO organizations (name) VALUES ('Old data') RETURNING id`)
      ).rows;
      const ids: string[] = [];
      for (const [stored] of rows) {
        const inserted = await client.query(
          `INSERT INTO users (organization_id, email, name, role) VALUES ($1, $2, 'Old', 'MEMBER') RETURNING id`,
          [organizationId, stored],
        );
        ids.push(inserted.rows[0].id as string);
      }
      await dataSource.initialize();
      const runner = dataSource.createQueryRunner();
      try {
        // Each in its transaction, as runMigrations runs them (migrationsTransactionMode 'each').
        for (let run = 0; run < 2; run++) {
          await runner.startTransaction();
          await new Migration().up(runner);
          await runner.commitTransaction();
        }
      } finally {
        await runner.release();
      }
      const emails = new Map<string, string>(
        (await client.query(`SELECT id, email FROM users WHERE organization_id = $1`, [organizationId])).rows.map(
          (row) => [row.id, row.email],
        ),
      );
      expect(ids.map((id) => emails.get(id))).toEqual(rows.map(([, normal]) => normal));
    } finally {
      if (dataSource.isInitialized) await dataSource.destroy();
      await client.end();
      await database.drop();
    }
  });

  // An instance of the previous build still serves while a new one migrates: a user it writes as the migration
  // starts was not seen by its read, and the rewrite into that user's form failed on the unique index (23505,
  // startup stopped). The migration now waits for writes in flight and leaves such twins to an admin.
  it('waits for a user written as it starts, and leaves its twin to an admin rather than failing', async () => {
    const database = await createTestDatabase();
    const [client, writer] = [
      new Client({ connectionString: database.url }),
      new Client({ connectionString: database.url }),
    ];
    await Promise.all([client.connect(), writer.connect()]);
    const dataSource = createDataSource({ url: database.url, db: TEST_DB_DEFAULTS });
    try {
      const [{ id: organizationId }] = (
        await client.query(`INSERT INTO organizations (name) VALUES ('Old data') RETURNING id`)
      ).rows;
      const insert = (db: Client, email: string) =>
        db.query(`INSERT INTO users (organization_id, email, name, role) VALUES ($1, $2, 'Old', 'MEMBER')`, [
          organizationId,
          email,
        ]);
      await insert(client, 'a@\u1fb3.example');
      await writer.query('BEGIN');
      await insert(writer, 'a@\u03b1\u03b9.example');
      await dataSource.initialize();
      const runner = dataSource.createQueryRunner();
      try {
        await runner.startTransaction();
        const migrating = new EmailDomainsMappedByUts461764800000300().up(runner);
        const settled = migrating.then(
          () => null,
          (error: Error) => error,
        );
        await waitForBlockedStatement({ dataSource } as TestApp, {
          by: (await writer.query('SELECT pg_backend_pid() AS pid')).rows[0].pid,
        });
        await writer.query('COMMIT');
        expect(await settled).toBeNull();
        await runner.commitTransaction();
      } finally {
        await runner.release();
      }
      const emails = (await client.query(`SELECT email FROM users ORDER BY email`)).rows.map((row) => row.email);
      expect(emails).toEqual(['a@\u03b1\u03b9.example', 'a@\u1fb3.example']);
    } finally {
      if (dataSource.isInitialized) await dataSource.destroy();
      await Promise.all([client.end(), writer.end()]);
      await database.drop();
    }
  });
});
