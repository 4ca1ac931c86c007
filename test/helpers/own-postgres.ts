import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createDataSource } from '../../src/db/data-source';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/dev/embedded-postgres';
import { TEST_DB_DEFAULTS } from './database-url';

/**
 * A migrated PostgreSQL of one test file's own, for tests that stop and restart the database under
 * running instances (they can't do that to the server the rest of the suite shares). Same port on restart.
 */
export class OwnPostgres {
  private constructor(
    private readonly tempDir: string,
    private server: EmbeddedPostgres,
  ) {}

  static async start(): Promise<OwnPostgres> {
    const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-own-pg-'));
    fs.chmodSync(tempDir, 0o755);
    const server = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), log: () => undefined });
    const migrator = createDataSource({ url: server.url, db: TEST_DB_DEFAULTS });
    await migrator.initialize();
    await migrator.runMigrations();
    await migrator.destroy();
    return new OwnPostgres(tempDir, server);
  }

  get url(): string {
    return this.server.url;
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  async restart(): Promise<void> {
    this.server = await startEmbeddedPostgres({
      dataDir: path.join(this.tempDir, 'data'),
      log: () => undefined,
      port: this.server.port,
    });
  }

  async destroy(): Promise<void> {
    await this.server.stop();
    fs.rmSync(this.tempDir, { recursive: true, force: true });
  }
}

/** Retries while a database comes back: a pool may hold connections the restart broke. */
export async function until<T>(attempt: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt().catch((error: unknown) => error as T);
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
