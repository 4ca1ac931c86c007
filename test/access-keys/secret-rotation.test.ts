import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

import { KeyCrypto } from '../../src/access-keys/key-crypto';
import { SYSTEM_ACTOR } from '../../src/audit/audit.service';
import { Role } from '../../src/users/user.entity';
import { createOrganization, type TestUser } from '../factories/organizations';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

const CLI = path.join(__dirname, '..', '..', 'dist', 'src', 'cli.js');
const USERS = 1000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the compiled CLI; `waitFor` resolves when stderr shows the text, `done` when the process ends. */
function startCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; waitFor(text: string): Promise<void>; done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ text: string; resolve(): void }> = [];
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
    for (const waiter of waiters.splice(0)) {
      if (stderr.includes(waiter.text)) waiter.resolve();
      else waiters.push(waiter);
    }
  });
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    child,
    done,
    waitFor: (text) =>
      new Promise<void>((resolve, reject) => {
        if (stderr.includes(text)) return resolve();
        waiters.push({ text, resolve });
        void done.then((run) =>
          reject(new Error(`the CLI ended (${run.code ?? run.signal}) before "${text}": ${run.stderr}`)),
        );
      }),
  };
}

describe('npm run cli -- rotate-secret', () => {
  const oldSecret = randomBytes(32);
  const newSecret = randomBytes(32);
  const keyring = `${newSecret.toString('base64')},${oldSecret.toString('base64')}`;
  let database: { url: string; drop(): Promise<void> };
  let admin: TestUser;
  /** Every user's key, by user id, as issued under the old secret. */
  const keys = new Map<string, string>();
  const env = (secret: string, extra: NodeJS.ProcessEnv = {}) => ({
    PATH: process.env.PATH,
    NODE_ENV: 'test',
    DATABASE_URL: database.url,
    ACCESS_KEY_SECRET: secret,
    ...extra,
  });

  beforeAll(async () => {
    database = await createTestDatabase();
    const setup = await startTestApp({ database: { url: database.url, secret: oldSecret } });
    try {
      // The database was set up with the old secret, as a first start records it.
      await setup.dataSource.query(`INSERT INTO key_secret_fingerprint (fingerprint) VALUES ($1)`, [
        new KeyCrypto(oldSecret).fingerprint,
      ]);
      admin = await createOrganization(setup, 'Rotation Clinic');
      keys.set(admin.id, admin.key);
      const { users } = setup.services;
      for (let start = 1; start < USERS; start += 50) {
        const count = Math.min(50, USERS - start);
        await setup.dataSource.transaction(async (manager) => {
          for (let index = start; index < start + count; index++) {
            const { user, key } = await users.insert(manager, {
              organizationId: admin.organizationId,
              email: `user-${index}@rotation.test`,
              name: `User ${String(index).padStart(4, '0')}`,
              role: Role.MEMBER,
              actor: SYSTEM_ACTOR,
            });
            keys.set(user.id, key.key);
          }
        });
      }
    } finally {
      await setup.close();
    }
    expect(keys.size).toBe(USERS);
  });
  let afterKill: (() => void) | null = null;
  afterEach(() => {
    afterKill?.();
    afterKill = null;
  });
  afterAll(() => database.drop());

  async function underNewSecret(): Promise<{ rotated: string[]; notYet: string[] }> {
    const rows: Array<{ user_id: string; rotated: boolean }> = await withApp({ secret: oldSecret }, (app) =>
      app.dataSource.query(`SELECT user_id, secret_fingerprint = $1 AS rotated FROM access_keys`, [
        new KeyCrypto(newSecret).fingerprint,
      ]),
    );
    return {
      rotated: rows.filter((row) => row.rotated).map((row) => row.user_id),
      notYet: rows.filter((row) => !row.rotated).map((row) => row.user_id),
    };
  }

  async function withApp<T>(
    params: { secret: Buffer; olderSecrets?: Buffer[] },
    work: (app: TestApp) => Promise<T>,
  ): Promise<T> {
    const app = await startTestApp({
      database: { url: database.url, ...params },
      env: { AUTH_FAILURE_LIMIT: '100000' },
    });
    try {
      return await work(app);
    } finally {
      await app.close();
    }
  }

  async function authenticates(app: TestApp, userId: string): Promise<boolean> {
    const response = await app.gql('{ me { id } }', { key: keys.get(userId) });
    return response.status === 200 && response.body.data?.me.id === userId;
  }

  /** Every key as the admin reads it, by user id (two pages of 500). */
  async function revealAll(app: TestApp): Promise<Map<string, string>> {
    const shown = new Map<string, string>();
    let after: string | null = null;
    do {
      const page: any = await app.gql(
        'query ($after: String) { users(first: 500, after: $after) { edges { node { id accessKey } } pageInfo { endCursor hasNextPage } } }',
        {
          key: admin.key,
          variables: { after },
        },
      );
      expect(page.body.errors).toBeUndefined();
      for (const { node } of page.body.data.users.edges) shown.set(node.id, node.accessKey);
      after = page.body.data.users.pageInfo.hasNextPage ? page.body.data.users.pageInfo.endCursor : null;
    } while (after);
    return shown;
  }

  it('startup refuses the new secret alone before the rotation (the keys are under the old one)', async () => {
    const run = await startCli(['migrate'], env(newSecret.toString('base64'))).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/does not match the secret this database was set up with/);
    expect((await startCli(['migrate'], env(keyring)).done).code).toBe(0);
  });

  it('killed halfway and run again: every key readable and authenticating, then under the new secret alone', async () => {
    await withApp({ secret: newSecret, olderSecrets: [oldSecret] }, async (app) => {
      const first = startCli(
        ['rotate-secret', '--batch-size', '100'],
        env(keyring, { CRM_TEST_ROTATE_PAUSE_AFTER_BATCHES: '4' }),
      );
      // Killed whatever happens, so a failed expectation cannot leave it paused.
      afterKill = () => first.child.kill('SIGKILL');
      await first.waitFor('rotate-secret paused after 4 batches');

      // Mid-rotation: 400 keys under the new secret, 600 still under the old; keys of both kinds work.
      const { rotated, notYet } = await underNewSecret();
      expect(rotated).toHaveLength(400);
      expect(notYet).toHaveLength(600);
      for (const userId of [...rotated.slice(0, 20), ...notYet.slice(0, 20)])
        expect(await authenticates(app, userId)).toBe(true);
      const midway = await revealAll(app);
      for (const userId of [rotated[0], notYet[0]]) expect(midway.get(userId)).toBe(keys.get(userId));

      first.child.kill('SIGKILL');
      expect((await first.done).signal).toBe('SIGKILL');

      const second = await startCli(['rotate-secret'], env(keyring)).done;
      expect(second.code).toBe(0);
      const result = JSON.parse(second.stdout.trim());
      expect(result).toMatchObject({ rotated: 600, fingerprintMoved: true });
      // Keys a request authenticated before the run still work on the running instance.
      for (const userId of [rotated[0], notYet[0]]) expect(await authenticates(app, userId)).toBe(true);
    });

    expect((await underNewSecret()).notYet).toEqual([]);
    // The old secret leaves the keyring: startup accepts the new one alone, and every key still works.
    expect((await startCli(['migrate'], env(newSecret.toString('base64'))).done).code).toBe(0);
    await withApp({ secret: newSecret }, async (app) => {
      const shown = await revealAll(app);
      expect(shown.size).toBe(USERS);
      for (const [userId, key] of keys) expect(shown.get(userId)).toBe(key);
      const failing: string[] = [];
      for (const userId of keys.keys()) if (!(await authenticates(app, userId))) failing.push(userId);
      expect(failing).toEqual([]);
    });
    // And the old secret alone is now refused, pointing at the secret the rotation moved to, not at "the
    // original secret" (the very one just refused).
    const old = await startCli(['migrate'], env(oldSecret.toString('base64'))).done;
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/or, after `npm run cli -- rotate-secret`, the one it moved the keys to/);
    expect(old.stderr).not.toMatch(/original secret/);
  });

  it('a rerun with nothing left to move moves nothing and keeps the fingerprint', async () => {
    const run = await startCli(['rotate-secret'], env(newSecret.toString('base64'))).done;
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout.trim())).toMatchObject({ rotated: 0, batches: 0, fingerprintMoved: true });
  });
});
