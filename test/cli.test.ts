import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

import { Client } from 'pg';

import { KeyCrypto } from '../src/access-keys/key-crypto';
import { MIGRATIONS } from '../src/db/data-source';
import { MIGRATIONS_LOCK } from '../src/db/runtime';
import { login, uniqueEmail } from './factories/organizations';
import { emptyDatabases } from './helpers/empty-databases';
import { createTestDatabase, startTestApp, type TestApp } from './helpers/test-app';
import { until } from './helpers/until';

const run = promisify(execFile);
const CLI = path.join(__dirname, '..', 'dist', 'src', 'cli.js');
const MAIN = path.join(__dirname, '..', 'dist', 'src', 'main.js');

/** Runs a compiled entry point to its end, with `stdin` written to it; never rejects. */
function runWith(params: {
  args: string[];
  env: NodeJS.ProcessEnv;
  stdin?: string | Buffer;
  /** Write `stdin` but leave the pipe open (as a terminal is, or `yes`), closed once the process has exited. */
  keepStdinOpen?: boolean;
}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, params.args, { env: params.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined); // EPIPE once the process has stopped reading
    if (params.keepStdinOpen) {
      child.stdin.write(params.stdin ?? '');
      child.on('exit', () => child.stdin.destroy());
    } else {
      child.stdin.end(params.stdin ?? '');
    }
  });
}

describe('npm run cli -- create-organization', () => {
  const emptyDatabase = emptyDatabases('crm_access_cli_migrate');
  let database: { url: string; drop(): Promise<void> };
  let app: TestApp;
  const secret = randomBytes(32);
  const env = () => ({
    PATH: process.env.PATH,
    DATABASE_URL: database.url,
    ACCESS_KEY_SECRET: secret.toString('base64'),
  });

  beforeAll(async () => {
    database = await createTestDatabase();
    app = await startTestApp({ database: { url: database.url, secret } });
  });
  afterAll(async () => {
    await app.close();
    await database.drop();
  });

  it('prints exactly one JSON object whose admin key works, with logs on stderr only', async () => {
    const adminEmail = uniqueEmail('cli');
    const { stdout } = await run(
      process.execPath,
      [
        CLI,
        'create-organization',
        '--name',
        'Harbor Health',
        '--admin-email',
        adminEmail,
        '--admin-name',
        'Hana Harbor',
        '--admin-password',
        'a long enough password',
      ],
      { env: env() },
    );
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const created = JSON.parse(lines[0]);
    expect(Object.keys(created).sort()).toEqual(['adminAccessKey', 'adminEmail', 'adminUserId', 'organizationId']);
    expect(created.adminEmail).toBe(adminEmail);

    const me = await app.gql('{ me { id role organization { id name } } }', { key: created.adminAccessKey });
    expect(me.body.data!.me).toEqual({
      id: created.adminUserId,
      role: 'ADMIN',
      organization: { id: created.organizationId, name: 'Harbor Health' },
    });
  });

  it('refuses missing flags with usage (exit 2) and bad input with a clear message (exit 1), writing nothing', async () => {
    const [{ n: before }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM organizations`);
    await expect(
      run(process.execPath, [CLI, 'create-organization', '--name', 'X'], { env: env() }),
    ).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--admin-email .* required[\s\S]*Usage/),
    });
    await expect(
      run(process.execPath, [CLI, 'create-organization', '--name', 'X', '--admin-email', 'nope', '--admin-name', 'Y'], {
        env: env(),
      }),
    ).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/not a valid email/) });
    const [{ n: after }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM organizations`);
    expect(after).toBe(before);
  });

  // parseArgs quoted a stray argument back ("Unexpected argument 'cak_...'"): a password or key typed after
  // a flag that takes no value reached stderr, which a one-off job's log keeps.
  it('never repeats a stray argument (a password or key)', async () => {
    const key = `cak_${'A1b2'.repeat(8)}abcdef`;
    const password = 'correct horse battery staple';
    for (const stray of [key, password]) {
      const result = await runWith({
        args: [
          CLI,
          'create-organization',
          '--name',
          'X',
          '--admin-email',
          uniqueEmail(),
          '--admin-name',
          'Y',
          '--admin-password-stdin',
          stray,
        ],
        env: env(),
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^Unexpected argument: .*not repeated here/);
      expect(result.stderr).not.toContain(stray);
      expect(result.stdout).toBe('');
    }
  });

  it('migrate applies migrations (idempotently) with DATABASE_URL, and says which', async () => {
    // An empty database: every migration, named in order.
    const { create } = emptyDatabase;
    const empty = await create();
    const first = await run(process.execPath, [CLI, 'migrate'], { env: { ...env(), DATABASE_URL: empty.url } });
    expect(first.stderr.trim()).toBe(`migrations applied: ${MIGRATIONS.map((migration) => migration.name).join(', ')}`);
    // Again, and on the migrated test database: nothing was pending, and it says so (it said "migrations applied").
    for (const url of [empty.url, database.url]) {
      const again = await run(process.execPath, [CLI, 'migrate'], { env: { ...env(), DATABASE_URL: url } });
      expect(again.stderr.trim()).toBe('no migrations pending');
    }
  });

  // Read with Number(), --batch-size took 0x10 (16), 1e3 (1000) and 5.0, where an operator may have meant other.
  it.each(['0', '0x10', '1e3', '5.0', '-5', ' ', '10001'])(
    'rotate-secret --batch-size %j: a usage error (exit 2) naming the bounds, before the database is touched',
    async (batchSize) => {
      const result = await runWith({
        args: [CLI, 'rotate-secret', `--batch-size=${batchSize}`],
        env: { ...env(), DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' },
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`--batch-size must be a whole number from 1 to 10000, got "${batchSize}".`);
    },
  );

  // parseArgs let the last of a repeated option win in silence: `--name X --name Y` made "Y", and a script that
  // appended an option it already had ran with whichever came last. Refused, for every option of every command,
  // without repeating the values (either may be a password).
  const organizationArgs = (email: string) => ['--name', 'Twice Org', '--admin-email', email, '--admin-name', 'Tess'];
  it.each([
    ['--name', (email: string) => [...organizationArgs(email), '--name', 'Other Org']],
    ['--name', (email: string) => ['--name=Other Org', ...organizationArgs(email)]],
    ['--admin-email', (email: string) => [...organizationArgs(email), '--admin-email', uniqueEmail('other')]],
    ['--admin-name', (email: string) => [...organizationArgs(email), '--admin-name', 'Tessa']],
    [
      '--admin-password',
      (email: string) => [
        ...organizationArgs(email),
        '--admin-password',
        'first long password',
        '--admin-password',
        'second long password',
      ],
    ],
    [
      '--admin-password-stdin',
      (email: string) => [...organizationArgs(email), '--admin-password-stdin', '--admin-password-stdin'],
    ],
  ])('create-organization with %s twice: a usage error (exit 2), and nothing is created', async (option, args) => {
    const email = uniqueEmail('twice');
    const [{ n: before }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM organizations`);
    const result = await runWith({
      args: [CLI, 'create-organization', ...args(email)],
      env: env(),
      stdin: 'a password from stdin\n',
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`^${option} was given twice: give each option once\\.\n[\\s\\S]*Usage`));
    expect(result.stderr).not.toMatch(/long password|Other Org|Tessa|other-/);
    expect(result.stdout).toBe('');
    const [{ n: after }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM organizations`);
    expect(after).toBe(before);
    expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [email])).toEqual([]);
  });

  it('rotate-secret with --batch-size twice: a usage error (exit 2), and no key is rotated', async () => {
    const state = () =>
      app.dataSource.query(
        `SELECT (SELECT array_agg(encode(key_ciphertext, 'hex') ORDER BY user_id) FROM access_keys) AS keys,
                (SELECT encode(fingerprint, 'hex') FROM key_secret_fingerprint) AS fingerprint`,
      );
    const before = await state();
    // A new current secret: a rotation that ran would rewrite every key and the fingerprint.
    const secrets = `${randomBytes(32).toString('base64')},${secret.toString('base64')}`;
    const result = await runWith({
      args: [CLI, 'rotate-secret', '--batch-size', '1', '--batch-size=2'],
      env: { ...env(), ACCESS_KEY_SECRET: secrets },
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^--batch-size was given twice: give each option once\./);
    expect(result.stdout).toBe('');
    expect(await state()).toEqual(before);
  });

  // Every other command refuses an option or argument it does not take; migrate applied the migrations anyway, so a
  // `migrate --dry-run` or a `migrate --help-me` an operator hoped would only look changed the database.
  it.each([[['--dry-run']], [['extra']], [['--name', 'x']]])(
    'migrate %j: a usage error (exit 2) before the database is touched',
    async (args) => {
      const { create } = emptyDatabase;
      const empty = await create();
      const result = await runWith({ args: [CLI, 'migrate', ...args], env: { ...env(), DATABASE_URL: empty.url } });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^(Unknown option|Unexpected argument)/);
      const client = new Client({ connectionString: empty.url });
      await client.connect();
      try {
        const { rows } = await client.query(`SELECT to_regclass('public.users') AS users`);
        expect(rows).toEqual([{ users: null }]);
      } finally {
        await client.end();
      }
    },
  );

  it('migrate says on stderr, once, that it waits for the session holding the migrations lock (pid, name)', async () => {
    const holder = new Client({ connectionString: database.url, application_name: 'another migrate' });
    await holder.connect();
    try {
      await holder.query(`SELECT pg_advisory_lock($1)`, [MIGRATIONS_LOCK]);
      const child = spawn(process.execPath, [CLI, 'migrate'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await until(() => stderr.includes('\n'));
      const pid = (holder as unknown as { processID: number }).processID;
      expect(stderr).toMatch(new RegExp(`^waiting for .*migrations lock.*pid ${pid}.*"another migrate"`));
      await holder.query(`SELECT pg_advisory_unlock($1)`, [MIGRATIONS_LOCK]);
      expect(await exited).toBe(0);
      expect(stderr.trim().split('\n')).toEqual([expect.stringMatching(/^waiting for/), 'no migrations pending']);
    } finally {
      await holder.end();
    }
  });

  describe('--admin-password kept out of the process list', () => {
    const create = (
      email: string,
      extra: { args?: string[]; env?: NodeJS.ProcessEnv; stdin?: string | Buffer; keepStdinOpen?: boolean },
    ) =>
      runWith({
        args: [
          CLI,
          'create-organization',
          '--name',
          'Quiet Org',
          '--admin-email',
          email,
          '--admin-name',
          'Quinn',
          ...(extra.args ?? []),
        ],
        env: { ...env(), ...extra.env },
        stdin: extra.stdin,
        keepStdinOpen: extra.keepStdinOpen,
      });

    it('--admin-password-stdin reads it from standard input (one line)', async () => {
      const email = uniqueEmail('stdin');
      const result = await create(email, { args: ['--admin-password-stdin'], stdin: 'a password from stdin\n' });
      expect(result.code).toBe(0);
      await expect(login(app, { email, password: 'a password from stdin' })).resolves.toMatch(/^cas_/);
    });

    it('CRM_ADMIN_PASSWORD is read from the environment', async () => {
      const email = uniqueEmail('env');
      const result = await create(email, { env: { CRM_ADMIN_PASSWORD: 'a password from the env' } });
      expect(result.code).toBe(0);
      await expect(login(app, { email, password: 'a password from the env' })).resolves.toMatch(/^cas_/);
    });

    // Found by an adversarial review: CRM_ADMIN_PASSWORD="$ADMIN_PASSWORD" (README) after a `read` that got an
    // empty line created an admin without a password and said nothing, while --admin-password '' was refused.
    it('an empty CRM_ADMIN_PASSWORD is a usage error (exit 2), not an admin without a password', async () => {
      const email = uniqueEmail('env-empty');
      const result = await create(email, { env: { CRM_ADMIN_PASSWORD: '' } });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/CRM_ADMIN_PASSWORD is set but empty/);
      expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [email])).toEqual([]);
    });

    it('two sources at once is a usage error (exit 2), and nothing is created', async () => {
      const email = uniqueEmail('both');
      const result = await create(email, {
        args: ['--admin-password', 'one password here', '--admin-password-stdin'],
        stdin: 'another one here\n',
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/one of --admin-password, --admin-password-stdin or CRM_ADMIN_PASSWORD/);
      expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [email])).toEqual([]);
    });

    const noUser = async (email: string) =>
      expect(await app.dataSource.query(`SELECT 1 FROM users WHERE email = $1`, [email])).toEqual([]);

    // Found by an adversarial review: the first admin's password from standard input was taken with a NUL in it,
    // which every sign-in refuses (no GraphQL variable may carry U+0000), so that admin could never sign in.
    it('a password with a NUL (only standard input can carry one) is refused, and nothing is created', async () => {
      const email = uniqueEmail('nul');
      const result = await create(email, { args: ['--admin-password-stdin'], stdin: 'a password\u0000with a NUL\n' });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/NUL/);
      expect(result.stderr).not.toMatch(/with a NUL|^\s+at /m);
      await noUser(email);
    });

    it('a password with a control character (a tab on the command line, an escape on standard input) is refused, and nothing is created', async () => {
      for (const extra of [
        { args: ['--admin-password', 'a password\twith a tab'] },
        { args: ['--admin-password-stdin'], stdin: 'a password\u001bwith an escape\n' },
        { env: { CRM_ADMIN_PASSWORD: 'a password\u007fwith a DEL' } },
      ]) {
        const email = uniqueEmail('control');
        const result = await create(email, extra);
        expect(result.code).toBe(1);
        expect(result.stderr).toMatch(/control character/);
        expect(result.stderr).not.toMatch(/with a|^\s+at /m);
        await noUser(email);
      }
    });

    // Found by an adversarial review: standard input was decoded leniently, so bytes that are not UTF-8 (a
    // password typed in a Latin-1 terminal) became U+FFFD in the stored password, one nobody could type again.
    it('standard input that is not UTF-8 is a usage error, and nothing is created', async () => {
      const email = uniqueEmail('latin1');
      const latin1 = Buffer.from('caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n', 'latin1');
      const result = await create(email, { args: ['--admin-password-stdin'], stdin: latin1 });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/standard input.*UTF-8/);
      await noUser(email);
    });

    // Found by an adversarial review: a UTF-8 byte order mark (what Windows tools write at the start of a file or
    // pipe) became part of the password, which the same password typed at sign-in then missed.
    it('a byte order mark at the start of standard input is not part of the password', async () => {
      const email = uniqueEmail('bom');
      const result = await create(email, { args: ['--admin-password-stdin'], stdin: '\ufeffa password after a BOM\n' });
      expect(result.code).toBe(0);
      await expect(login(app, { email, password: 'a password after a BOM' })).resolves.toMatch(/^cas_/);
    });

    it('a password given in NFD on any of the three sources signs in typed in NFC, NFD or full width', async () => {
      const nfc = 'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
      const nfd = nfc.normalize('NFD');
      const sources: Array<{ args?: string[]; env?: NodeJS.ProcessEnv; stdin?: string }> = [
        { args: ['--admin-password', nfd] },
        { env: { CRM_ADMIN_PASSWORD: nfd } },
        { args: ['--admin-password-stdin'], stdin: `${nfd}\n` },
      ];
      for (const source of sources) {
        const email = uniqueEmail('forms');
        expect((await create(email, source)).code).toBe(0);
        for (const typed of [nfc, nfd, nfc.replace('caf', '\uff43\uff41\uff46')]) {
          await expect(login(app, { email, password: typed })).resolves.toMatch(/^cas_/);
        }
      }
    });

    // Found by an adversarial review: the whole of standard input was read (to its end) and decoded before the
    // first line was taken. A password typed at a terminal and Enter waited for Ctrl-D; `yes "$P" | ...` never
    // ended and took memory without bound; bytes after the first line that were not UTF-8 refused the password.
    it('only the first line is read: an open standard input after it, or what follows it, does not matter', async () => {
      const open = uniqueEmail('stdin-open');
      const typed = await create(open, {
        args: ['--admin-password-stdin'],
        stdin: 'a password typed at a terminal\n',
        keepStdinOpen: true,
      });
      expect(typed.code).toBe(0);
      await expect(login(app, { email: open, password: 'a password typed at a terminal' })).resolves.toMatch(/^cas_/);

      const after = uniqueEmail('stdin-after');
      const stdin = Buffer.concat([Buffer.from('a password then other bytes\n'), Buffer.from([0xff, 0xfe, 0x00])]);
      const result = await create(after, { args: ['--admin-password-stdin'], stdin });
      expect(result.code).toBe(0);
      await expect(login(app, { email: after, password: 'a password then other bytes' })).resolves.toMatch(/^cas_/);
    });

    it('a first line longer than any password is refused without reading on (exit 2), and nothing is created', async () => {
      const email = uniqueEmail('stdin-long');
      const result = await create(email, {
        args: ['--admin-password-stdin'],
        stdin: 'x'.repeat(1024 * 1024),
        keepStdinOpen: true,
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/standard input/);
      await noUser(email);
    });

    // Found by an adversarial review: a line ended by a lone carriage return (a file saved with old Mac line
    // endings, `printf '%s\r'`) kept it in the password; a browser's password field cannot send one.
    it('a carriage return ending the first line is not part of the password', async () => {
      for (const stdin of ['a password ending in CR\r', 'a password ending in CR\r\n']) {
        const email = uniqueEmail('stdin-cr');
        expect((await create(email, { args: ['--admin-password-stdin'], stdin })).code).toBe(0);
        await expect(login(app, { email, password: 'a password ending in CR' })).resolves.toMatch(/^cas_/);
      }
    });

    it('an empty standard input is a usage error', async () => {
      const result = await create(uniqueEmail('empty'), { args: ['--admin-password-stdin'], stdin: '' });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/standard input/);
    });

    it('--help documents all three and exits 0', async () => {
      for (const args of [['--help'], ['-h'], ['help'], ['create-organization', '--help']]) {
        const result = await runWith({ args: [CLI, ...args], env: { PATH: process.env.PATH } });
        expect(result.code).toBe(0);
        expect(result.stdout).toMatch(/--admin-password-stdin/);
        expect(result.stdout).toMatch(/CRM_ADMIN_PASSWORD/);
        expect(result.stdout).toMatch(/process list/);
      }
    });
  });

  // The config accepts LOG_LEVEL in any letter case with spaces around (README "Configuration"); the CLI handed
  // the raw value to pino, which stopped ' warn' with its stack trace.
  it('runs with any LOG_LEVEL the server accepts (letter case, spaces around)', async () => {
    for (const level of [' warn ', 'INFO', 'Debug']) {
      const result = await runWith({ args: [CLI, 'migrate'], env: { ...env(), LOG_LEVEL: level } });
      expect({ level, code: result.code, stack: /^\s+at /m.test(result.stderr) }).toEqual({
        level,
        code: 0,
        stack: false,
      });
      expect(result.stderr).toMatch(/no migrations pending/);
    }
  });

  describe('operator mistakes: one clear line on stderr, no stack trace, exit code 1', () => {
    const oneLine = (result: { code: number | null; stderr: string }, message: RegExp) => {
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toMatch(/^\s+at /m);
    };
    const entryPoints: Array<[string, string[]]> = [
      ['the CLI', [CLI, 'migrate']],
      ['the server (npm start)', [MAIN]],
    ];

    describe.each(entryPoints)('%s', (_label, args) => {
      it('a configuration value out of range', async () => {
        oneLine(
          await runWith({ args, env: { ...env(), AUTH_FAILURE_LIMIT: '1000000000' } }),
          /AUTH_FAILURE_LIMIT must be a whole number/,
        );
      });

      it('an AUDIT_RETENTION_DAYS that is not a number of days', async () => {
        oneLine(
          await runWith({ args, env: { ...env(), AUDIT_RETENTION_DAYS: '0' } }),
          /AUDIT_RETENTION_DAYS must be a whole number of days/,
        );
      });

      it('an ACCESS_KEY_SECRET that is too short', async () => {
        oneLine(
          await runWith({ args, env: { ...env(), ACCESS_KEY_SECRET: 'c2hvcnQ=' } }),
          /ACCESS_KEY_SECRET must be at least 32 random bytes/,
        );
      });

      it('an ACCESS_KEY_SECRET other than the one the database was set up with', async () => {
        await run(process.execPath, [CLI, 'migrate'], { env: env() });
        const wrong = randomBytes(32).toString('base64');
        oneLine(
          await runWith({ args, env: { ...env(), ACCESS_KEY_SECRET: wrong, PORT: '0' } }),
          /ACCESS_KEY_SECRET does not match/,
        );
      });

      // Both reached pino and proxy-addr unchecked and stopped startup with their stack trace.
      it('a LOG_LEVEL that is not a level', async () => {
        oneLine(
          await runWith({ args, env: { ...env(), LOG_LEVEL: 'verbose' } }),
          /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace or silent, got "verbose"/,
        );
      });

      it('a TRUST_PROXY entry that is not an address or CIDR', async () => {
        oneLine(await runWith({ args, env: { ...env(), TRUST_PROXY: '10.0.0.1, banana' } }), /TRUST_PROXY .*"banana"/);
      });

      it('a database that cannot be reached', async () => {
        const url = new URL(database.url);
        url.port = '1';
        oneLine(
          await runWith({ args, env: { ...env(), DATABASE_URL: url.toString(), DB_CONNECT_TIMEOUT_MS: '1000' } }),
          /PostgreSQL|database/i,
        );
      });
    });
  });
});

/**
 * The listening socket is the server's last step: a port in use or a HOST that does not resolve stopped it with
 * Node's words (a HOST that does not resolve even read as "could not connect to PostgreSQL ... Check
 * DATABASE_URL"), and left the embedded PostgreSQL it had started running.
 */
describe('npm start where it cannot listen', () => {
  let database: { url: string; drop(): Promise<void> };
  let taken: net.Server;
  const secret = randomBytes(32);
  const env = (extra: NodeJS.ProcessEnv) => ({
    PATH: process.env.PATH,
    DATABASE_URL: database.url,
    ACCESS_KEY_SECRET: secret.toString('base64'),
    MIGRATE_ON_START: 'true',
    ...extra,
  });

  beforeAll(async () => {
    database = await createTestDatabase();
    taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => taken.close(resolve));
    await database.drop();
  });

  const oneLine = (result: { code: number | null; stderr: string }) => {
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stderr).not.toMatch(/PostgreSQL|DATABASE_URL/);
  };

  it('a PORT in use: one line naming the address and PORT', async () => {
    const port = (taken.address() as net.AddressInfo).port;
    const result = await runWith({ args: [MAIN], env: env({ PORT: String(port) }) });
    oneLine(result);
    expect(result.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*already in use.*PORT`));
  });

  it('a HOST that does not resolve: one line naming HOST, not the database', async () => {
    const result = await runWith({ args: [MAIN], env: env({ HOST: 'no-such-host.invalid', PORT: '0' }) });
    oneLine(result);
    expect(result.stderr).toMatch(/cannot listen on no-such-host\.invalid:0: .*HOST/);
  });
});

/**
 * DESIGN: "startup refuses a secret that doesn't match the database". With a migration pending the secret is not
 * checked (there may be nothing to check it against), so a command that writes keys must wait for the migration:
 * a key issued, or a fingerprint recorded, under a wrong secret would have every instance refused at start.
 */
describe('the CLI with a migration pending', () => {
  let database: { url: string; drop(): Promise<void> };
  let db: Client;
  const secret = randomBytes(32);
  const wrong = randomBytes(32);
  const env = (key: Buffer) => ({
    PATH: process.env.PATH,
    DATABASE_URL: database.url,
    ACCESS_KEY_SECRET: key.toString('base64'),
  });
  const state = async () => ({
    fingerprints: (await db.query(`SELECT encode(fingerprint, 'hex') AS f FROM key_secret_fingerprint`)).rows,
    keys: (await db.query(`SELECT encode(secret_fingerprint, 'hex') AS f FROM access_keys`)).rows,
    organizations: (await db.query(`SELECT count(*)::int AS n FROM organizations`)).rows,
  });

  beforeAll(async () => {
    database = await createTestDatabase();
    db = new Client({ connectionString: database.url });
    await db.connect();
    await db.query(`INSERT INTO key_secret_fingerprint (fingerprint) VALUES ($1)`, [new KeyCrypto(secret).fingerprint]);
    // An upgrade whose newest migration is not applied yet.
    await db.query(`DELETE FROM migrations WHERE id = (SELECT max(id) FROM migrations)`);
  });
  afterAll(async () => {
    await db.end();
    await database.drop();
  });

  it.each([
    ['create-organization', ['--name', 'Pending Clinic', '--admin-email', 'pending@example.com', '--admin-name', 'P']],
    ['rotate-secret', []],
  ])('%s refuses (exit 1, naming `npm run migrate`, no stack) and writes nothing', async (command, args) => {
    const before = await state();
    const result = await runWith({ args: [CLI, command, ...args], env: env(wrong) });
    expect(result.code).toBe(1);
    // One line, the CLI's own: not also the server's warning about /readyz, which a command has nothing to do with.
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^database migrations are pending: run `npm run migrate` first/),
    ]);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stdout).toBe('');
    expect(await state()).toEqual(before);
  });
});
