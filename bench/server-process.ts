import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { Client } from 'pg';

import { type EmbeddedPostgres, startEmbeddedPostgres } from '../src/dev/embedded-postgres';

/**
 * The p-th percentile (0-100, nearest rank) of `sorted` (ascending, not empty): the smallest value with at least
 * p% of the values at or below it. Units are the values'.
 */
export const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];

/** A TCP port free on the loopback interface right now (for a server process to listen on). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Resolves once the service on `port` answers /readyz; throws if `child` exits first or after 30 s. */
export async function waitUntilReady(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('the service did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Stops a server and waits for it to exit; at once when it already has. */
export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Where a benchmark's PostgreSQL runs: DATABASE_URL's server, or an embedded one in a temporary folder. */
export interface BenchDatabaseServer {
  readonly url: string;
  /** Null for DATABASE_URL. */
  readonly embedded: EmbeddedPostgres | null;
  /** Stops the embedded server and removes its folder (DATABASE_URL's server is left alone). */
  stop(): Promise<void>;
}

/** DATABASE_URL when set, else an embedded PostgreSQL with its data in a new temporary folder named `label`-... */
export async function benchDatabaseServer(label: string): Promise<BenchDatabaseServer> {
  const url = process.env.DATABASE_URL;
  if (url) return { url, embedded: null, stop: async () => undefined };
  const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), `${label}-`));
  fs.chmodSync(tempDir, 0o755);
  const embedded = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), log: () => undefined });
  return {
    url: embedded.url,
    embedded,
    async stop() {
      await embedded.stop();
      fs.rmSync(tempDir, { recursive: true, force: true });
    },
  };
}

/**
 * A new database named `prefix`_ and 8 random hex digits on the server of `serverUrl` (a URL of any of its
 * databases); `url` is the same URL with the new database's name, `drop` drops it, closing its connections.
 */
export async function freshDatabase(params: {
  serverUrl: string;
  prefix: string;
}): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${params.prefix}_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new Client({ connectionString: params.serverUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(params.serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/**
 * The built service (dist/src/main.js, or `entry`) in production mode in its own process on `port`, once it
 * answers /readyz. `env` adds to or overrides the base settings; `cpu` pins the process to that core (taskset);
 * `ipc` opens a Node IPC channel to it (for a preloaded probe such as bench/memory-probe.ts).
 */
export async function startServiceProcess(params: {
  url: string;
  secret: Buffer;
  port: number;
  entry?: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
  cpu?: number;
  ipc?: boolean;
}): Promise<ChildProcess> {
  const args = [...(params.nodeArgs ?? []), params.entry ?? path.join(__dirname, '..', 'src', 'main.js')];
  const [command, commandArgs] =
    params.cpu === undefined
      ? [process.execPath, args]
      : ['taskset', ['-c', String(params.cpu), process.execPath, ...args]];
  const child = spawn(command, commandArgs, {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      DATABASE_URL: params.url,
      ACCESS_KEY_SECRET: params.secret.toString('base64'),
      PORT: String(params.port),
      LOG_LEVEL: 'warn',
      ...params.env,
    },
    stdio: params.ipc ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'inherit', 'inherit'],
  });
  await waitUntilReady(params.port, child);
  return child;
}
