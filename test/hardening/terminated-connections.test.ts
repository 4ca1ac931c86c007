import { randomBytes } from 'node:crypto';

import type { Pool } from 'pg';
import { Client } from 'pg';

import { AuditRetention } from '../../src/audit/audit-retention';
import type { PauseHooks } from '../../src/authorization/authority';
import { runPrepared } from '../../src/db/prepared';
import { createLogger } from '../../src/logger';
import { operatorMessage } from '../../src/operator-errors';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { until } from '../helpers/own-postgres';
import { startTcpProxy, type TcpProxy, throughProxy } from '../helpers/tcp-proxy';
import {
  type AppWithSecondConnection,
  createTestDatabase,
  type GraphQLResponse,
  startAppWithSecondConnection,
  startTestApp,
  type TestApp,
} from '../helpers/test-app';

/** Holds the app's next act at `where` until the returned release is called; resolves once it is held. */
async function holdAct(hooks: PauseHooks, where: 'beforeAuthorityCheck' | 'afterAuthorityCheck'): Promise<() => void> {
  let held!: () => void;
  const isHeld = new Promise<void>((resolve) => (held = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  hooks[where] = async () => {
    held();
    await released;
  };
  await isHeld;
  delete hooks[where];
  return release;
}

/**
 * PostgreSQL ends every session when it stops or restarts (57P01, "terminating connection due to administrator
 * command"), and pg_terminate_backend ends one the same way. pg emits 'error' on a client whose connection
 * fails while no query runs on it; with no listener, Node throws it and the process dies. Each case holds a
 * connection the app has checked out idle (no query running) at a known point, terminates its backend from
 * another connection, then lets the app go on: the app must not crash and must keep answering.
 */
describe('PostgreSQL ending a connection the app holds idle', () => {
  let app: TestApp;
  let admin: TestUser;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    app = await startTestApp({ hooks, env: { LOG_LEVEL: 'warn' }, captureLogs: true });
    admin = await createOrganization(app, 'Terminated Connections Org');
  });
  afterAll(async () => {
    await app.close();
  });
  afterEach(() => {
    delete hooks.beforeAuthorityCheck;
  });

  /** The app's session whose last statement matches `pattern` and that waits for its next one (in `state`). */
  async function idleBackend(pattern: string, state = 'idle%'): Promise<number> {
    const rows: Array<{ pid: number }> = await app.dataSource.query(
      `SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE $2 AND query LIKE $1`,
      [pattern, state],
    );
    expect(rows).toHaveLength(1);
    return rows[0].pid;
  }

  /**
   * Ends the session as a fast shutdown does and waits for its backend to be gone; by the next turn of the
   * event loop after that answer, the app's end of it has read the 57P01 (it was sent before the backend exited).
   */
  async function terminate(pid: number): Promise<void> {
    const [{ ended }] = await app.dataSource.query(`SELECT pg_terminate_backend($1, 10000) AS ended`, [pid]);
    expect(ended).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
  }

  /**
   * Holds the app's next act at `where`, ends its connection (idle in its transaction) as PostgreSQL stopping would,
   * then lets the act go on; the app's log from then on is what the act wrote.
   */
  async function endHeldActsConnection(where: 'beforeAuthorityCheck' | 'afterAuthorityCheck'): Promise<void> {
    const release = await holdAct(hooks, where);
    app.logs.length = 0;
    await terminate(await idleBackend('%', 'idle in transaction'));
    release();
  }

  async function stillAnswers(): Promise<void> {
    const me = await app.gql('{ me { id } }', { key: admin.key });
    expect(me.body).toEqual({ data: { me: { id: admin.id } } });
    const created = await createUser(app, admin, { name: 'Created after the termination' });
    expect(created.key).toBeTruthy();
  }

  /** The act failed as the database's, not as a bug: 503 SERVICE_UNAVAILABLE, and no error line of a resolver. */
  function expectUnavailable(answer: GraphQLResponse, field: string): void {
    expect(answer.status).toBe(503);
    expect(answer.body.data ?? null).toBeNull();
    expect(answer.body.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([
      [[field], 'SERVICE_UNAVAILABLE'],
    ]);
    expect(app.logs.map((line) => JSON.parse(line).msg)).not.toContain('unexpected error in a resolver');
  }

  for (const where of ['beforeAuthorityCheck', 'afterAuthorityCheck'] as const) {
    it(`an act's transaction held open between two statements (${where}): 503, nothing changed, the instance keeps answering`, async () => {
      const member = await createUser(app, admin, { name: 'Renamed Member' });
      const renaming = app.gql(`mutation ($id: ID!) { updateUser(id: $id, input: { name: "Never" }) { name } }`, {
        key: admin.key,
        variables: { id: member.id },
      });
      await endHeldActsConnection(where);

      expectUnavailable(await renaming, 'updateUser');
      const [{ name }] = await app.dataSource.query(`SELECT name FROM users WHERE id = $1`, [member.id]);
      expect(name).toBe('Renamed Member');
      await stillAnswers();
    });
  }

  it('a key regeneration whose connection is ended after its authority check: 503, the old key still works, no new one', async () => {
    const member = await createUser(app, admin, { name: 'Key Holder' });
    const [before] = await app.dataSource.query(
      `SELECT key_digest, previous_key_digest FROM access_keys WHERE user_id = $1`,
      [member.id],
    );
    const regenerating = app.gql(`mutation ($id: ID!) { regenerateAccessKey(userId: $id) { user { id } } }`, {
      key: admin.key,
      variables: { id: member.id },
    });
    await endHeldActsConnection('afterAuthorityCheck');

    expectUnavailable(await regenerating, 'regenerateAccessKey');
    expect(
      await app.dataSource.query(`SELECT key_digest, previous_key_digest FROM access_keys WHERE user_id = $1`, [
        member.id,
      ]),
    ).toEqual([before]);
    const me = await app.gql('{ me { id } }', { key: member.key });
    expect(me.body).toEqual({ data: { me: { id: member.id } } });
    await stillAnswers();
  });

  it('a key reveal whose view batch loses its connection after the authority check: the key comes only with its view', async () => {
    const member = await createUser(app, admin, { name: 'Revealed Member' });
    const views = async (): Promise<number> =>
      (
        await app.dataSource.query(
          `SELECT count(*)::int AS n FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED' AND target_user_id = $1`,
          [member.id],
        )
      )[0].n;
    const viewsBefore = await views();
    const revealing = app.gql(`query ($id: ID!) { user(id: $id) { accessKey } }`, {
      key: admin.key,
      variables: { id: member.id },
    });
    await endHeldActsConnection('afterAuthorityCheck');

    // user(id) reveals ahead of its field and leaves a failure to the field, which loads the key again: that
    // second batch, on a new connection, confirms and commits the view before the key is answered.
    const revealed = await revealing;
    expect(revealed.body).toEqual({ data: { user: { accessKey: member.key } } });
    expect(await views()).toBe(viewsBefore + 1);
    expect(app.logs.map((line) => JSON.parse(line).level)).not.toContain(50);
    await stillAnswers();
  });

  it("a command's transaction that loses its connection between statements: one line for the operator, no stack", async () => {
    const runner = app.dataSource.createQueryRunner();
    await runner.startTransaction();
    let failure: unknown;
    try {
      await runner.query('SELECT 1');
      await terminate(await idleBackend('SELECT 1', 'idle in transaction'));
      failure = await runner.query('SELECT 2').then(
        () => undefined,
        (error: unknown) => error,
      );
    } finally {
      await runner.rollbackTransaction().catch(() => undefined);
      await runner.release();
    }
    const line = operatorMessage(failure);
    expect(line.split('\n')).toEqual([line]);
    expect(line).toMatch(/PostgreSQL/);
    await stillAnswers();
  });

  it("a command's statement that PostgreSQL ends while it runs (57P01): the same line for the operator", async () => {
    const sleeping = app.dataSource.query('SELECT pg_sleep(30) AS ended_mid_statement').then(
      () => undefined,
      (error: unknown) => error,
    );
    const pid = await until(
      () =>
        app.dataSource.query(
          `SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30) AS ended_mid_statement%'`,
        ) as Promise<Array<{ pid: number }>>,
      (rows) => rows.length === 1,
    );
    await terminate(pid[0].pid);
    const failure = await sleeping;
    expect((failure as { code?: string }).code).toBe('57P01');
    const line = operatorMessage(failure);
    expect(line.split('\n')).toEqual([line]);
    expect(line).toMatch(/^lost the connection to PostgreSQL: .*\(57P01\)\. .*run the command again\.$/);
    await stillAnswers();
  });

  it('audit retention holding its advisory lock between batches: the run ends with a warning, the next one deletes', async () => {
    await app.dataSource.query(
      `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, created_at)
       SELECT $1, 'LOGIN_SUCCEEDED', $2, 'SESSION', now() - interval '400 days' FROM generate_series(1, 10)`,
      [admin.organizationId, admin.id],
    );
    let held!: () => void;
    const isHeld = new Promise<void>((resolve) => (held = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const logs: string[] = [];
    const retention = (batchDeleted?: () => Promise<void>) =>
      new AuditRetention({
        dataSource: app.dataSource,
        logger: createLogger({ level: 'warn', destination: { write: (line: string) => void logs.push(line) } }),
        settings: { days: 30, batchSize: 1000, pauseMs: 0, firstRunAfterMs: 0, intervalMs: 3_600_000 },
        hooks: { batchDeleted },
      });
    const run = retention(async () => {
      held();
      await released;
    }).runOnce();
    await isHeld;
    app.logs.length = 0;
    await terminate(await idleBackend('DELETE FROM audit_events%'));
    release();

    expect(await run).toEqual({ deleted: 0, batches: 0 });
    expect(logs.map((line) => JSON.parse(line).msg)).toEqual([
      'audit retention: run failed; it is tried again at the next interval',
    ]);
    // The lost connection itself: one warning (an expected event when PostgreSQL restarts), no error.
    expect(
      app.logs.map((line) => JSON.parse(line)).map(({ level, msg, err }) => ({ level, msg, code: err?.code })),
    ).toEqual([
      { level: 40, msg: 'lost a database connection in use between statements; it is discarded', code: '57P01' },
    ]);
    await stillAnswers();
    // The lock went with the session: the next run takes it and deletes.
    expect(await retention().runOnce()).toEqual({ deleted: 10, batches: 1 });
  });
});

/**
 * The pool hands a connection to the next waiter the moment its last query's answer is read, and pg reads a
 * whole TCP read at once: when PostgreSQL's 57P01 arrives in the same read as that answer (a busy event loop,
 * a shutdown right after the query), the connection is already handed over, and TypeORM puts its own error
 * listener on it only a moment later. A proxy between the pool and PostgreSQL holds the answer back until the
 * session is terminated, then delivers both in one write.
 */
describe('PostgreSQL ending a pooled connection in the same read as its last answer', () => {
  let database: { url: string; drop(): Promise<void> };
  let proxy: TcpProxy;
  let app: TestApp;
  let admin: TestUser;
  let other: Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    const server = new URL(database.url);
    proxy = await startTcpProxy({ host: server.hostname, port: Number(server.port) });
    // One connection in the pool, so the held query's is the one the waiter gets; the listener goes direct.
    app = await startTestApp({
      env: { DB_POOL_SIZE: '1' },
      database: { url: throughProxy(proxy, database.url), secret: randomBytes(32) },
      listenerDatabaseUrl: () => database.url,
    });
    admin = await createOrganization(app, 'Same Read Org');
    other = new Client({ connectionString: database.url });
    await other.connect();
  });
  afterAll(async () => {
    await other?.end();
    await app?.close();
    await proxy?.close();
    await database?.drop();
  });

  it('the connection handed to a waiting query is already lost: that query fails, the instance keeps answering', async () => {
    const pool = (app.dataSource.driver as unknown as { master: Pool }).master;
    proxy.holdReplies();
    const answered = runPrepared<{ one: number }>(app.dataSource, 'SELECT 1 AS one', []);
    // The pool's one session has answered (the answer waits in the proxy) and waits for its next statement.
    const [{ pid }] = await until(
      async () =>
        (
          await other.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'crm-access' AND state = 'idle'
                AND query = 'SELECT 1 AS one'`,
          )
        ).rows,
      (rows) => rows.length === 1,
    );
    const waiting = app.dataSource.query('SELECT 2 AS two');
    await until(
      async () => pool.waitingCount,
      (count) => count === 1,
    );
    const closedBefore = proxy.serversClosed;
    await other.query('SELECT pg_terminate_backend($1, 10000)', [pid]);
    await until(
      async () => proxy.serversClosed,
      (closed) => closed > closedBefore,
    );
    proxy.releaseReplies();

    expect(await answered).toEqual([{ one: 1 }]);
    await expect(waiting).rejects.toThrow();
    const me = await app.gql('{ me { id } }', { key: admin.key });
    expect(me.body).toEqual({ data: { me: { id: admin.id } } });
    expect(await app.dataSource.query('SELECT 3 AS three')).toEqual([{ three: 3 }]);
  });
});

/**
 * A pool of one: a connection ended under an act must leave the pool when the act is done, or every later
 * request waits for a slot that never frees. Several in a row, then ordinary requests.
 */
describe('PostgreSQL ending the one pooled connection under acts, again and again', () => {
  const hooks: PauseHooks = {};
  let started: AppWithSecondConnection;
  let admin: TestUser;

  beforeAll(async () => {
    started = await startAppWithSecondConnection({
      hooks,
      env: { DB_POOL_SIZE: '1', LOG_LEVEL: 'warn' },
      captureLogs: true,
    });
    admin = await createOrganization(started.app, 'Pool Of One Org');
  });
  afterAll(async () => {
    await started?.close();
  });

  it('each act answers 503, the pool keeps one live connection, and requests after them succeed', async () => {
    const { app, other } = started;
    const member = await createUser(app, admin, { name: 'Kept Name' });
    for (let round = 0; round < 5; round++) {
      const renaming = app.gql(`mutation ($id: ID!) { updateUser(id: $id, input: { name: "Never" }) { name } }`, {
        key: admin.key,
        variables: { id: member.id },
      });
      const release = await holdAct(hooks, 'afterAuthorityCheck');
      const { rows } = await other.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`,
      );
      expect(rows).toHaveLength(1);
      await other.query('SELECT pg_terminate_backend($1, 10000)', [rows[0].pid]);
      await new Promise((resolve) => setImmediate(resolve));
      release();
      const renamed = await renaming;
      expect([renamed.status, renamed.body.errors?.[0]?.extensions?.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    }
    const pool = (app.dataSource.driver as unknown as { master: Pool }).master;
    expect(pool.totalCount).toBeLessThanOrEqual(1);
    const me = await app.gql('{ me { id } }', { key: member.key });
    expect(me.body).toEqual({ data: { me: { id: member.id } } });
    const renamed = await app.gql(`mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed" }) { name } }`, {
      key: admin.key,
      variables: { id: member.id },
    });
    expect(renamed.body).toEqual({ data: { updateUser: { name: 'Renamed' } } });
    expect(
      app.logs.map((line) => JSON.parse(line)).filter(({ msg }) => msg === 'unexpected error in a resolver'),
    ).toEqual([]);
  });
});
