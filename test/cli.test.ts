import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase, startTestApp, type TestApp } from './helpers/test-app';
import { uniqueEmail } from './factories/organizations';

const run = promisify(execFile);
const CLI = path.join(__dirname, '..', 'dist', 'src', 'cli.js');

describe('npm run cli -- create-organization', () => {
  let database: { url: string; drop(): Promise<void> };
  let app: TestApp;
  const secret = randomBytes(32);
  const env = () => ({ PATH: process.env.PATH, DATABASE_URL: database.url, ACCESS_KEY_SECRET: secret.toString('base64') });

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
      [CLI, 'create-organization', '--name', 'Harbor Health', '--admin-email', adminEmail, '--admin-name', 'Hana Harbor', '--admin-password', 'a long enough password'],
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
    await expect(run(process.execPath, [CLI, 'create-organization', '--name', 'X'], { env: env() })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--admin-email .* required[\s\S]*Usage/),
    });
    await expect(
      run(process.execPath, [CLI, 'create-organization', '--name', 'X', '--admin-email', 'nope', '--admin-name', 'Y'], { env: env() }),
    ).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/not a valid email/) });
    const [{ n: after }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM organizations`);
    expect(after).toBe(before);
  });

  it('migrate applies migrations (idempotently) with DATABASE_URL', async () => {
    const { stderr } = await run(process.execPath, [CLI, 'migrate'], { env: env() });
    expect(stderr).toMatch(/migrations applied/);
  });
});
