import { Client } from 'pg';

import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { waitForBlockedStatement } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The write of key uses skips a key row another transaction holds, then writes that row alone, waiting for it.
 * The server's last write (Services.stop) waits for the write in flight: it returned at once when
 * every note had been taken by a write in flight, which then went on after the data source was gone (a
 * warning, and the use never written).
 */
describe('the last write of key uses on shutdown', () => {
  let app: TestApp;
  let admin: TestUser;
  let user: TestUser;
  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app);
    user = await createUser(app, admin);
  });
  afterAll(() => app.close());

  const lastUsed = async (): Promise<Date | null> =>
    (await app.dataSource.query('SELECT last_used_at FROM access_keys WHERE user_id = $1', [user.id]))[0].last_used_at;

  it('waits for a write in flight and writes the notes it skipped', async () => {
    const rowHolder = new Client({ connectionString: app.databaseUrl });
    const tableHolder = new Client({ connectionString: app.databaseUrl });
    await rowHolder.connect();
    await tableHolder.connect();
    try {
      // The user's key row held, as an act holds it (FOR UPDATE: the write of uses skips it).
      await rowHolder.query('BEGIN');
      await rowHolder.query('SELECT 1 FROM access_keys WHERE user_id = $1 FOR UPDATE', [user.id]);
      const [{ pid: rowHolderPid }] = (await rowHolder.query('SELECT pg_backend_pid() AS pid')).rows;
      // The table held in SHARE mode: the write of uses (an UPDATE) waits before it starts.
      await tableHolder.query('BEGIN');
      await tableHolder.query('LOCK TABLE access_keys IN SHARE MODE');
      const [{ pid: tableHolderPid }] = (await tableHolder.query('SELECT pg_backend_pid() AS pid')).rows;

      const keys = app.services.accessKeys;
      keys.markUsed(app.keyCrypto.digest(user.key).toString('base64'));
      const inFlight = keys.flushUse();
      await waitForBlockedStatement(app, { by: tableHolderPid });

      let stopped = false;
      const stopping = keys.flushUse().then(() => (stopped = true));
      await tableHolder.query('COMMIT');
      // The write in flight skipped the held row and now waits for it alone; the last write waits for it.
      await waitForBlockedStatement(app, { by: rowHolderPid });
      await new Promise((resolve) => setImmediate(resolve));
      expect(stopped).toBe(false);
      expect(await lastUsed()).toBeNull();

      await rowHolder.query('COMMIT');
      await stopping;
      await inFlight;
      expect(await lastUsed()).not.toBeNull();
      // No write left to run after the data source is gone.
      expect((keys as unknown as { useTimer: unknown }).useTimer).toBeNull();
    } finally {
      await rowHolder.query('ROLLBACK').catch(() => undefined);
      await tableHolder.query('ROLLBACK').catch(() => undefined);
      await rowHolder.end();
      await tableHolder.end();
    }
  });
});
