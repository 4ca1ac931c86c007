import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

import { KeyCrypto } from '../../src/access-keys/key-crypto';
import { rotateSecret, RotationError } from '../../src/access-keys/secret-rotation';
import type { PauseHooks } from '../../src/authorization/authority';
import { loadConfig } from '../../src/config';
import { openDatabase, SecretMismatchError } from '../../src/db/runtime';
import { createLogger } from '../../src/logger';
import type { Actor } from '../../src/request/actor';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { waitForBlockedStatement } from '../helpers/locks';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';
const RENAME_SELF = 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed In Grace" }) { id } }';
const REGENERATE = 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }';

/**
 * Review C of issue 18: the master secret rotation attacked as an operator could get it wrong and as a
 * request could race it. Every case holds its window open with a pause hook or runs the steps in order.
 */
describe('rotate-secret under attack', () => {
  const oldSecret = randomBytes(32);
  const newSecret = randomBytes(32);
  const base64 = (secret: Buffer) => secret.toString('base64');
  const databases: Array<{ drop(): Promise<void> }> = [];
  afterAll(async () => {
    for (const database of databases) await database.drop();
  });

  /**
   * A database set up with the old secret (as a first start records it), with an admin and `members` more users
   * of `role` (MEMBER unless given).
   */
  async function setUp(
    members: number,
    role: Role = Role.MEMBER,
  ): Promise<{ url: string; admin: TestUser; members: TestUser[] }> {
    const database = await createTestDatabase();
    databases.push(database);
    const setup = await startTestApp({ database: { url: database.url, secret: oldSecret } });
    try {
      await setup.dataSource.query(`INSERT INTO key_secret_fingerprint (fingerprint) VALUES ($1)`, [
        new KeyCrypto(oldSecret).fingerprint,
      ]);
      const admin = await createOrganization(setup, 'Rotation Attack Clinic');
      const list: TestUser[] = [];
      for (let index = 0; index < members; index++) list.push(await createUser(setup, admin, { role }));
      return { url: database.url, admin, members: list };
    } finally {
      await setup.close();
    }
  }

  /**
   * Hooks that pause the first act of `userId` (of anyone, without it) at `point` until `release`; `atCheck`
   * resolves when it got there.
   */
  function pauseOnce(
    point: 'beforeAuthorityCheck' | 'afterAuthorityCheck',
    userId?: string,
  ): { hooks: PauseHooks; atCheck: Promise<void>; release: () => void } {
    let reached!: () => void;
    const atCheck = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let armed = true;
    const pause = async (actor: Actor) => {
      if (!armed || (userId !== undefined && actor.principal.userId !== userId)) return;
      armed = false;
      reached();
      await held;
    };
    return { hooks: { [point]: pause }, atCheck, release };
  }

  /** What a process start does with this ACCESS_KEY_SECRET: resolves when accepted, rejects with the refusal. */
  async function start(url: string, keyring: Buffer[]): Promise<void> {
    const config = loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: url,
      ACCESS_KEY_SECRET: keyring.map(base64).join(','),
    });
    const database = await openDatabase({ config, logger: createLogger({ level: 'silent' }) });
    await database.close();
  }

  async function withApp<T>(
    url: string,
    keyring: Buffer[],
    work: (app: TestApp) => Promise<T>,
    hooks?: PauseHooks,
  ): Promise<T> {
    const [secret, ...olderSecrets] = keyring;
    const app = await startTestApp({
      database: { url, secret, olderSecrets },
      hooks,
      env: { AUTH_FAILURE_LIMIT: '100000' },
    });
    try {
      return await work(app);
    } finally {
      await app.close();
    }
  }

  it("README's procedure with two instances restarted one at a time: a key issued on either works on the other at every step", async () => {
    const { url, admin, members } = await setUp(1);
    /** Regenerates the member's key on `issuer` and asks `other` for `me` with it. */
    async function issuedOnWorksOn(issuer: TestApp, other: TestApp): Promise<boolean> {
      const response = await issuer.gql(REGENERATE, { key: admin.key, variables: { id: members[0].id } });
      expect(response.body.errors).toBeUndefined();
      const key = response.body.data!.regenerateAccessKey.accessKey;
      return (await other.gql('{ me { id } }', { key })).body.data?.me.id === members[0].id;
    }
    /** Two instances with these keyrings, both running at once (one restarted, the other not yet). */
    const pair = (a: Buffer[], b: Buffer[], work: (a: TestApp, b: TestApp) => Promise<void>) =>
      withApp(url, a, (first) => withApp(url, b, (second) => work(first, second)));

    // Why the new secret goes in second first: first on one instance while another lacks it, its keys fail there.
    await pair([newSecret, oldSecret], [oldSecret], async (a, b) => expect(await issuedOnWorksOn(a, b)).toBe(false));
    // Step 2: "$OLD,$NEW" on one instance, then the other.
    await pair([oldSecret, newSecret], [oldSecret], async (a, b) => {
      expect(await issuedOnWorksOn(a, b)).toBe(true);
      expect(await issuedOnWorksOn(b, a)).toBe(true);
    });
    // Step 3: "$NEW,$OLD" on one instance, then the other.
    await pair([newSecret, oldSecret], [oldSecret, newSecret], async (a, b) => {
      expect(await issuedOnWorksOn(a, b)).toBe(true);
      expect(await issuedOnWorksOn(b, a)).toBe(true);
    });
    // Step 4: rotate-secret; step 5: "$NEW" alone on one instance, then the other.
    await withApp(url, [newSecret, oldSecret], async (app) => {
      expect((await rotateSecret({ dataSource: app.dataSource, keyCrypto: app.keyCrypto })).fingerprintMoved).toBe(
        true,
      );
    });
    await start(url, [newSecret]);
    await pair([newSecret], [newSecret, oldSecret], async (a, b) => {
      expect(await issuedOnWorksOn(a, b)).toBe(true);
      expect(await issuedOnWorksOn(b, a)).toBe(true);
    });
  });

  it('two runs at once share the work: each key moved once, both end with the fingerprint moved; a key in its grace period keeps working', async () => {
    const { url, admin, members } = await setUp(5);
    await withApp(url, [newSecret, oldSecret], async (first) => {
      // A key replaced with a grace period: only its digest is stored, under the old secret.
      const replaced = await first.gql(
        'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
        {
          key: admin.key,
          variables: { id: members[0].id },
        },
      );
      expect(replaced.body.errors).toBeUndefined();
      await withApp(url, [newSecret, oldSecret], async (second) => {
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let paused!: () => void;
        const atPause = new Promise<void>((resolve) => (paused = resolve));
        const one = rotateSecret({
          dataSource: first.dataSource,
          keyCrypto: first.keyCrypto,
          batchSize: 1,
          afterBatch: async ({ batches }) => {
            if (batches !== 1) return;
            paused();
            await held;
          },
        });
        await atPause;
        const other = await rotateSecret({ dataSource: second.dataSource, keyCrypto: second.keyCrypto, batchSize: 1 });
        release();
        const done = await one;
        // Six keys; the regenerated one was made under the new secret already.
        expect(done.rotated + other.rotated).toBe(5);
        expect(done.rotated).toBe(1);
        expect(done.fingerprintMoved && other.fingerprintMoved).toBe(true);
        expect(other.olderSecretsUsedUntil).not.toBeNull();
      });
      // The replaced key still authenticates and acts (its grace period is under the old secret, still listed).
      const acted = await first.gql(RENAME_SELF, { key: members[0].key, variables: { id: members[0].id } });
      expect(acted.body.errors).toBeUndefined();
    });
  });

  it('a reveal in flight when rotate-secret rewrites its caller key still acts: the key is the same key', async () => {
    const { url, admin, members } = await setUp(1);
    const { hooks, atCheck, release } = pauseOnce('beforeAuthorityCheck');
    await withApp(
      url,
      [newSecret, oldSecret],
      async (app) => {
        const request = app.gql(REVEAL, { key: admin.key, variables: { id: members[0].id } });
        await atCheck;
        // The request authenticated with the admin's key under the old secret; the rotation now re-digests it.
        const result = await rotateSecret({ dataSource: app.dataSource, keyCrypto: app.keyCrypto });
        expect(result.fingerprintMoved).toBe(true);
        release();
        const response = await request;
        expect(response.body.errors).toBeUndefined();
        expect(response.body.data!.user.accessKey).toBe(members[0].key);
      },
      hooks,
    );
  });

  it('startup refuses the old secret alone once rotate-secret has moved some keys (killed halfway), instead of losing them', async () => {
    const { url, admin, members } = await setUp(3);
    await withApp(url, [newSecret, oldSecret], async (app) => {
      const stop = new RotationError('stopped after one batch');
      await expect(
        rotateSecret({
          dataSource: app.dataSource,
          keyCrypto: app.keyCrypto,
          batchSize: 2,
          afterBatch: () => {
            throw stop;
          },
        }),
      ).rejects.toBe(stop);
    });
    // The database still records the old secret, but two keys are now under the new one only.
    await expect(start(url, [oldSecret])).rejects.toThrow(SecretMismatchError);
    await expect(start(url, [oldSecret])).rejects.toThrow(/ACCESS_KEY_SECRET/);
    // With the new secret back in the list it starts, and every key works.
    await start(url, [newSecret, oldSecret]);
    await start(url, [oldSecret, newSecret]);
    await withApp(url, [oldSecret, newSecret], async (app) => {
      for (const user of [admin, ...members]) {
        const response = await app.gql('{ me { id } }', { key: user.key });
        expect(response.body.data?.me.id).toBe(user.id);
      }
    });
  });

  it('after a rotation, keys issued by an instance that still lists the old secret first keep startup with the new secret alone refused', async () => {
    const { url, admin, members } = await setUp(1);
    let regenerated = '';
    await withApp(url, [newSecret, oldSecret], async (app) => {
      expect((await rotateSecret({ dataSource: app.dataSource, keyCrypto: app.keyCrypto })).fingerprintMoved).toBe(
        true,
      );
    });
    // An instance restarted with the list in the wrong order: startup accepts it (it holds the recorded secret),
    // and the key it issues is under the old secret.
    await start(url, [oldSecret, newSecret]);
    await withApp(url, [oldSecret, newSecret], async (app) => {
      const response = await app.gql(REGENERATE, { key: admin.key, variables: { id: members[0].id } });
      expect(response.body.errors).toBeUndefined();
      regenerated = response.body.data!.regenerateAccessKey.accessKey;
    });
    // Removing the old secret now would make that key unreadable and refused: startup says so instead.
    await expect(start(url, [newSecret])).rejects.toThrow(SecretMismatchError);
    // rotate-secret with the right order moves it, and then the new secret alone starts and the key works.
    await withApp(url, [newSecret, oldSecret], async (app) => {
      expect(await rotateSecret({ dataSource: app.dataSource, keyCrypto: app.keyCrypto })).toMatchObject({
        rotated: 1,
        fingerprintMoved: true,
      });
    });
    await start(url, [newSecret]);
    await withApp(url, [newSecret], async (app) => {
      const response = await app.gql('{ me { id } }', { key: regenerated });
      expect(response.body.data?.me.id).toBe(members[0].id);
      const shown = await app.gql(REVEAL, { key: admin.key, variables: { id: members[0].id } });
      expect(shown.body.data?.user.accessKey).toBe(regenerated);
    });
  });
  describe("when an act writes another user's key row while rotate-secret waits for the actor's", () => {
    /**
     * The act holds its actor's key row FOR KEY SHARE from its check to its commit, then writes the target's;
     * the rotation's waiting pass takes key rows FOR UPDATE by user id, the target's (the smaller id) first.
     * Each case returns what the act's answer must be and checks what it did afterwards.
     */
    const acts: Array<{
      name: string;
      query: string;
      variables: (target: TestUser) => Record<string, unknown>;
      answer: (target: TestUser) => unknown;
      after?: (app: TestApp, data: any, target: TestUser) => Promise<void>;
    }> = [
      {
        name: 'regenerateAccessKey',
        query: 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { user { id } accessKey } }',
        variables: (target) => ({ id: target.id }),
        answer: (target) => ({ regenerateAccessKey: { user: { id: target.id }, accessKey: expect.any(String) } }),
        after: async (app, data, target) => {
          const me = await app.gql('{ me { id } }', { key: data.regenerateAccessKey.accessKey });
          expect(me.body.data?.me.id).toBe(target.id);
        },
      },
      {
        name: 'reportLeakedAccessKey',
        query:
          'mutation ($key: String!) { reportLeakedAccessKey(key: $key, location: "https://paste.example/1") { revoked user { id } } }',
        variables: (target) => ({ key: target.key }),
        answer: (target) => ({ reportLeakedAccessKey: { revoked: true, user: { id: target.id } } }),
        after: async (app, _data, target) =>
          expect((await app.gql('{ me { id } }', { key: target.key })).status).toBe(401),
      },
      {
        name: 'setAccessKeyPolicy with applyToExistingKeys',
        query: 'mutation { setAccessKeyPolicy(maxKeyAgeDays: 30, applyToExistingKeys: true) { existingKeysUpdated } }',
        variables: () => ({}),
        // Both keys of the organization, the target's among them.
        answer: () => ({ setAccessKeyPolicy: { existingKeysUpdated: 2 } }),
      },
    ];

    it.each(acts)(
      '$name: the act answers as it would alone, and the rotation finishes with every key under the new secret',
      async ({ query, variables, answer, after }) => {
        const { url, admin, members } = await setUp(1, Role.ADMIN);
        const [target, actor] = [admin, members[0]].sort((x, y) => (x.id < y.id ? -1 : 1));
        const { hooks, atCheck, release } = pauseOnce('afterAuthorityCheck', actor.id);
        await withApp(
          url,
          [newSecret, oldSecret],
          async (app) => {
            // Stands for another request of the target's in flight: its act holds its key row FOR KEY SHARE.
            const holder = new Client({ connectionString: app.databaseUrl });
            await holder.connect();
            try {
              const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
              const acted = app.gql(query, { key: actor.key, variables: variables(target) });
              await atCheck;
              await holder.query('BEGIN');
              await holder.query('SELECT 1 FROM access_keys WHERE user_id = $1 FOR KEY SHARE', [target.id]);
              // The first pass skips both rows (held); the waiting pass queues on the target's row first.
              const rotation = rotateSecret({ dataSource: app.dataSource, keyCrypto: app.keyCrypto }).catch(
                (error: unknown) => error,
              );
              await waitForBlockedStatement(app, { by: rows[0].pid });
              await holder.query('COMMIT');
              // The rotation got past the target's row and now waits for the actor's, which the act holds.
              await waitForBlockedStatement(app, { notBy: rows[0].pid });
              release();
              const response = await acted;
              expect(response.body.errors).toBeUndefined();
              expect(response.body.data).toEqual(answer(target));
              expect(await rotation).toMatchObject({ fingerprintMoved: true });
              const [{ n: left }] = await app.dataSource.query(
                'SELECT count(*)::int AS n FROM access_keys WHERE secret_fingerprint IS DISTINCT FROM $1',
                [app.keyCrypto.fingerprint],
              );
              expect(left).toBe(0);
              await after?.(app, response.body.data, target);
              // The actor's key was re-digested, not replaced: it still works.
              expect((await app.gql('{ me { id } }', { key: actor.key })).body.data?.me.id).toBe(actor.id);
            } finally {
              release();
              await holder.query('ROLLBACK').catch(() => undefined);
              await holder.end();
            }
          },
          hooks,
        );
      },
    );
  });
});
