import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { freePort, freshDatabase, stopServer } from './server-process';

/**
 * A reference build that `npm run bench` measures beside the service (BENCH_REFERENCE_DIR): another checkout of
 * this repository, installed and built by the user, such as the commit issue 17 measured (60ee081). Its code and
 * schema may differ from this checkout's, so it is set up only through its own interfaces: its CLI's `migrate`
 * and `create-organization` on a database of its own on the bench's PostgreSQL server, and its GraphQL
 * `createUser` for the users.
 */
export interface ReferenceBuild {
  /** The checkout's directory, absolute. */
  directory: string;
  /** `git rev-parse --short HEAD` of the checkout. */
  revision: string;
  /** Its GraphQL URL and process, as the bench's Target. */
  url: string;
  pid: number;
  /** Its organization's admin's access key. */
  adminAccessKey: string;
  /** Users in its organization, the admin included. */
  users: number;
  /** Stops its server and drops its database; safe to call twice. */
  stop(): Promise<void>;
}

/** Users created at once through the reference's GraphQL API. */
const CREATE_CONCURRENCY = 16;

const execFileAsync = promisify(execFile);

/**
 * Sets up and starts the reference build in `directory`: a new database on the server of `serverUrl`, its
 * migrations, an organization with `users` users in all (the admin and `users` - 1 members), and its server
 * (`dist/src/main.js`) started by `start`, so with the service's settings and pinning. On failure whatever was
 * set up is stopped and dropped before the error is thrown.
 */
export async function startReferenceBuild(params: {
  directory: string;
  serverUrl: string;
  secret: Buffer;
  users: number;
  start: (params: { url: string; secret: Buffer; port: number; entry: string }) => Promise<ChildProcess>;
}): Promise<ReferenceBuild> {
  const directory = path.resolve(params.directory);
  const [cliPath, mainPath] = ['cli.js', 'main.js'].map((file) => path.join(directory, 'dist', 'src', file));
  for (const file of [cliPath, mainPath])
    if (!fs.existsSync(file))
      throw new Error(`BENCH_REFERENCE_DIR: no ${file}; install and build it first (npm ci && npm run build)`);
  const { stdout: revision } = await execFileAsync('git', ['-C', directory, 'rev-parse', '--short', 'HEAD']);
  const database = await freshDatabase({ serverUrl: params.serverUrl, prefix: 'crm_access_bench_reference' });
  let server: ChildProcess | null = null;
  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      if (server) await stopServer(server);
      await database.drop();
    })());
  try {
    const cli = async (args: string[]) => {
      const { stdout } = await execFileAsync(process.execPath, [cliPath, ...args], {
        cwd: directory,
        env: {
          PATH: process.env.PATH,
          NODE_ENV: 'production',
          DATABASE_URL: database.url,
          ACCESS_KEY_SECRET: params.secret.toString('base64'),
          LOG_LEVEL: 'warn',
        },
      });
      return stdout;
    };
    await cli(['migrate']);
    const tag = randomBytes(3).toString('hex');
    const created = await cli([
      'create-organization',
      '--name',
      `Bench reference ${tag}`,
      '--admin-email',
      `admin-${tag}@bench.example`,
      '--admin-name',
      'Bench Admin',
    ]);
    const { adminAccessKey } = JSON.parse(created.trim().split('\n').at(-1)!) as { adminAccessKey: string };
    const port = await freePort();
    server = await params.start({
      url: database.url,
      secret: params.secret,
      port,
      entry: mainPath,
    });
    const url = `http://127.0.0.1:${port}/graphql`;
    await createUsers({ url, adminAccessKey, count: params.users - 1, tag });
    return {
      directory,
      revision: revision.trim(),
      url,
      pid: server.pid!,
      adminAccessKey,
      users: params.users,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Creates `count` members through `createUser`, CREATE_CONCURRENCY at a time; throws on the first refusal. */
async function createUsers(params: { url: string; adminAccessKey: string; count: number; tag: string }) {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < params.count; i = next++) {
      const response = await fetch(params.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-access-key': params.adminAccessKey },
        body: JSON.stringify({
          query: 'mutation($i: CreateUserInput!) { createUser(input: $i) { id } }',
          variables: {
            i: { email: `user-${i}-${params.tag}@bench.example`, name: `User ${String(i).padStart(4, '0')}` },
          },
        }),
      });
      const body = (await response.json()) as { errors?: { message: string }[] };
      if (!response.ok || body.errors)
        throw new Error(`the reference build refused createUser (${response.status}): ${JSON.stringify(body.errors)}`);
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
}
