import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client } from 'pg';

import {
  type EmbeddedPostgres,
  FALLBACK_CLUSTER_ROOT,
  SERVER_ACCOUNT,
  startEmbeddedPostgres,
} from '../../src/dev/embedded-postgres';

jest.setTimeout(120_000);

const isRoot = process.getuid?.() === 0;
const itAsRoot = isRoot ? it : it.skip;

let parentDir: string;
let messages: string[];
const running: EmbeddedPostgres[] = [];
/** Clusters kept outside the test's folder (under FALLBACK_CLUSTER_ROOT), removed after each test. */
const outside: string[] = [];

beforeEach(() => {
  parentDir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-postgres-test-'));
  // As root the server runs as its own account: reachable, the cluster stays in this folder (not /var/lib/crm-access).
  fs.chmodSync(parentDir, 0o755);
  messages = [];
});

afterEach(async () => {
  for (const server of running.splice(0)) await server.stop().catch(() => undefined);
  fs.rmSync(parentDir, { recursive: true, force: true });
  for (const dir of outside.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  return path.join(parentDir, '.data');
}

async function start(dir = dataDir()): Promise<EmbeddedPostgres> {
  const server = await startEmbeddedPostgres({ dataDir: dir, log: (message) => messages.push(message) });
  running.push(server);
  return server;
}

async function query<T extends object>(url: string, sql: string): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

function pidFile(): string {
  return path.join(dataDir(), 'postgres', 'postmaster.pid');
}

function postmasterPid(): number {
  return Number.parseInt(fs.readFileSync(pidFile(), 'utf8').split('\n')[0], 10);
}

function readPassword(): string {
  return fs.readFileSync(path.join(dataDir(), 'postgres-password'), 'utf8');
}

it('starts a server on a free local port, answers queries and stops', async () => {
  const server = await start();

  expect(server.port).not.toBe(5432);
  expect(new URL(server.url).hostname).toBe('127.0.0.1');
  expect(new URL(server.url).pathname).toBe('/crm_access');
  await expect(query(server.url, 'select 1 as one')).resolves.toEqual([{ one: 1 }]);
  expect(fs.statSync(path.join(dataDir(), 'postgres-password')).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(dataDir()).filter((name) => name.includes('pwfile'))).toEqual([]);

  await server.stop();
  await server.stop();
  expect(fs.existsSync(pidFile())).toBe(false);
  await expect(query(server.url, 'select 1')).rejects.toThrow();
  expect(messages.join('\n')).not.toContain(readPassword());
});

it('keeps data and the password across restarts', async () => {
  const first = await start();
  await query(first.url, "create table notes (body text); insert into notes values ('kept')");
  const password = readPassword();
  await first.stop();

  const second = await start();

  expect(readPassword()).toBe(password);
  await expect(query(second.url, 'select body from notes')).resolves.toEqual([{ body: 'kept' }]);
  expect(messages.filter((message) => message.startsWith('Initialising'))).toHaveLength(1);
});

it('takes over from a server left running by a killed earlier run', async () => {
  const abandoned = await start();
  await query(abandoned.url, "create table notes (body text); insert into notes values ('survived')");
  const leftoverPid = postmasterPid();

  const server = await start();

  expect(messages.some((message) => message.includes('left behind by an earlier run'))).toBe(true);
  expect(postmasterPid()).not.toBe(leftoverPid);
  expect(server.port).not.toBe(abandoned.port);
  await expect(query(server.url, 'select body from notes')).resolves.toEqual([{ body: 'survived' }]);
  await server.stop();
});

it('removes a stale postmaster.pid whose process is gone', async () => {
  const first = await start();
  await first.stop();
  fs.writeFileSync(pidFile(), `999999\n${path.join(dataDir(), 'postgres')}\n`);

  const server = await start();

  expect(messages.some((message) => message.includes('stale'))).toBe(true);
  await expect(query(server.url, 'select 1 as one')).resolves.toEqual([{ one: 1 }]);
  await server.stop();
});

function account(flag: '-u' | '-g', name: string): number {
  return Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
}

/** The real uid of a running process; undefined once it has exited (backends come and go). */
function realUidOf(pid: number): number | undefined {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

/** Every process of the cluster in `pgdata` (the postmaster and its children), with its real uid. */
function clusterProcessUids(pgdata: string): number[] {
  const postmaster = Number(fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = fs
    .readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return (
          Number(
            fs
              .readFileSync(`/proc/${pid}/stat`, 'utf8')
              .replace(/^.*\)\s*/s, '')
              .split(' ')[1],
          ) === postmaster
        );
      } catch {
        return false;
      }
    });
  return [postmaster, ...children.map(Number)].map(realUidOf).filter((uid): uid is number => uid !== undefined);
}

/** What the user `nobody` (any other process on the machine) can do to the cluster: nothing. */
function expectClosedToOthers(pgdata: string): void {
  const asNobody = (script: string) =>
    spawnSync('/bin/sh', ['-c', script, 'sh', pgdata], {
      uid: account('-u', 'nobody'),
      gid: account('-g', 'nobody'),
      cwd: '/',
      stdio: 'ignore',
    }).status;
  expect(asNobody('ls "$1"')).not.toBe(0);
  expect(asNobody('cat "$1/pg_hba.conf"')).not.toBe(0);
  expect(asNobody('cat "$1/PG_VERSION"')).not.toBe(0);
  expect(asNobody('echo "host all all 0.0.0.0/0 trust" >> "$1/pg_hba.conf"')).not.toBe(0);
}

function expectOwnedByTheServerAccount(pgdata: string): void {
  const stat = fs.statSync(pgdata);
  expect(stat.uid).toBe(account('-u', SERVER_ACCOUNT));
  expect(stat.mode & 0o777).toBe(0o700);
}

itAsRoot(
  `runs the server as its own account (${SERVER_ACCOUNT}) when started by root, its cluster closed to every other user`,
  async () => {
    await start();

    const pgdata = path.join(dataDir(), 'postgres');
    const uids = clusterProcessUids(pgdata);
    expect(uids.length).toBeGreaterThan(1);
    expect(new Set(uids)).toEqual(new Set([account('-u', SERVER_ACCOUNT)]));
    expect(uids).not.toContain(account('-u', 'nobody'));
    expectOwnedByTheServerAccount(pgdata);
    expectClosedToOthers(pgdata);
    // DATA_DIR (the secret, the password) opens to the server account's group only, never to others.
    const dataStat = fs.statSync(dataDir());
    expect(dataStat.mode & 0o007).toBe(0);
    expect(dataStat.gid).toBe(account('-g', SERVER_ACCOUNT));
    expect(fs.statSync(path.join(dataDir(), 'postgres-password')).uid).toBe(0);
  },
);

itAsRoot('takes over a cluster a previous version left to the user nobody', async () => {
  const first = await start();
  await query(first.url, "create table notes (body text); insert into notes values ('kept')");
  await first.stop();
  // The layout of earlier versions: the cluster owned by nobody, DATA_DIR open to others for search.
  const nobody = { uid: account('-u', 'nobody'), gid: account('-g', 'nobody') };
  execFileSync('chown', [
    '-R',
    `${nobody.uid}:${nobody.gid}`,
    path.join(dataDir(), 'postgres'),
    path.join(dataDir(), 'postgres.log'),
  ]);
  fs.chmodSync(dataDir(), 0o701);

  const server = await start();

  await expect(query(server.url, 'select body from notes')).resolves.toEqual([{ body: 'kept' }]);
  expectOwnedByTheServerAccount(path.join(dataDir(), 'postgres'));
  expectClosedToOthers(path.join(dataDir(), 'postgres'));
});

itAsRoot(
  `started from a folder other users cannot enter (like /root): the cluster lives under ${FALLBACK_CLUSTER_ROOT}, said in the log, and the folder stays closed`,
  async () => {
    const hidden = path.join(parentDir, 'home-of-root');
    fs.mkdirSync(hidden, { mode: 0o700 });
    const dir = path.join(hidden, 'checkout', '.data');

    const first = await start(dir);
    const home = new RegExp(`(${FALLBACK_CLUSTER_ROOT}/[0-9a-f]{16})`).exec(messages.join('\n'))?.[1];
    expect(home).toBeDefined();
    outside.push(home!);
    expect(messages.join('\n')).toContain(`cluster is kept in ${home}`);
    await query(first.url, "create table notes (body text); insert into notes values ('kept')");

    const pgdata = path.join(home!, 'postgres');
    expect(new Set(clusterProcessUids(pgdata))).toEqual(new Set([account('-u', SERVER_ACCOUNT)]));
    expectOwnedByTheServerAccount(pgdata);
    expectClosedToOthers(pgdata);
    expect(fs.statSync(home!).mode & 0o777).toBe(0o700);
    expect(fs.statSync(hidden).mode & 0o777).toBe(0o700);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);

    // A run killed without stopping its server: the next start finds the same cluster and takes it over.
    const leftover = Number(fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const second = await start(dir);
    expect(messages.some((message) => message.includes('left behind by an earlier run'))).toBe(true);
    expect(Number(fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0])).not.toBe(leftover);
    await expect(query(second.url, 'select body from notes')).resolves.toEqual([{ body: 'kept' }]);
  },
);
