import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { EmbeddedPostgres, startEmbeddedPostgres } from '../../src/db/embedded-postgres';

jest.setTimeout(120_000);

const isRoot = process.getuid?.() === 0;
const itAsRoot = isRoot ? it : it.skip;

let parentDir: string;
let messages: string[];
const running: EmbeddedPostgres[] = [];

beforeEach(() => {
  parentDir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-postgres-test-'));
  // When the tests run as root the server runs as `nobody`, which must be able to enter this folder.
  fs.chmodSync(parentDir, 0o755);
  messages = [];
});

afterEach(async () => {
  for (const server of running.splice(0)) await server.stop().catch(() => undefined);
  fs.rmSync(parentDir, { recursive: true, force: true });
});

function dataDir(): string {
  return path.join(parentDir, '.data');
}

async function start(): Promise<EmbeddedPostgres> {
  const server = await startEmbeddedPostgres({ dataDir: dataDir(), log: (message) => messages.push(message) });
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

itAsRoot('runs the server as the user nobody when started by root', async () => {
  await start();

  const status = fs.readFileSync(`/proc/${postmasterPid()}/status`, 'utf8');
  const realUid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  expect(realUid).toBe(Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()));
});

itAsRoot('explains how to fix a data folder that nobody cannot reach', async () => {
  const hidden = path.join(parentDir, 'hidden');
  fs.mkdirSync(hidden, { mode: 0o700 });

  await expect(
    startEmbeddedPostgres({ dataDir: path.join(hidden, '.data'), log: (message) => messages.push(message) }),
  ).rejects.toThrow(/Set DATA_DIR to a folder the user "nobody" can reach/);
});
