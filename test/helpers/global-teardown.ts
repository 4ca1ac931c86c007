import fs from 'node:fs';

import { Client } from 'pg';

export default async function globalTeardown(): Promise<void> {
  const { embedded, tempDir, template, serverUrl } = globalThis.__testDatabase;
  const admin = new Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
  await admin.end();
  await embedded?.stop();
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
}
