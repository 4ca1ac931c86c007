import 'reflect-metadata';

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client } from 'pg';

import { createDataSource } from '../../src/db/data-source';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/dev/embedded-postgres';
import { TEST_DB_DEFAULTS, withDatabase } from './database-url';

declare global {
  var __testDatabase: {
    embedded: EmbeddedPostgres | null;
    tempDir: string | null;
    template: string;
    serverUrl: string;
  };
}

/**
 * One PostgreSQL for the run: TEST_DATABASE_URL when given, else an embedded server in a temporary folder.
 * Migrations run once into a template database; each test file clones it (CREATE DATABASE ... TEMPLATE).
 */
export default async function globalSetup(): Promise<void> {
  let serverUrl = process.env.TEST_DATABASE_URL;
  let embedded: EmbeddedPostgres | null = null;
  let tempDir: string | null = null;
  if (!serverUrl) {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-test-'));
    fs.chmodSync(tempDir, 0o755);
    embedded = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), log: () => undefined });
    serverUrl = embedded.url;
  }
  const template = `crm_access_template_${process.pid}`;
  const admin = new Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${template}`);
  await admin.query(`CREATE DATABASE ${template}`);
  await admin.end();

  const dataSource = createDataSource({ url: withDatabase(serverUrl, template), db: TEST_DB_DEFAULTS });
  await dataSource.initialize();
  await dataSource.runMigrations({ transaction: 'each' });
  await dataSource.destroy();

  process.env.CRM_TEST_SERVER_URL = serverUrl;
  process.env.CRM_TEST_TEMPLATE = template;
  globalThis.__testDatabase = { embedded, tempDir, template, serverUrl };
}
