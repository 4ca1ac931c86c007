import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

/** Whether a process with this id is still running (signal 0 tests for it without sending anything). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The compiled server's entry point (`npm run build` makes it; `npm test` builds first). */
export const BUILT_MAIN = path.join(__dirname, '..', '..', 'dist', 'src', 'main.js');

/** How {@link spawnBuiltServer} starts the process, beyond its environment. */
export interface SpawnOptions {
  /** Node options put before the entry point, such as `['--require', preload]`. */
  nodeArgs?: string[];
  /** `ulimit -n` for the process (through bash), so the server's defaults that follow it can be tested. */
  openFileLimit?: number;
}

/**
 * A server process started from the build, as an operator starts it (`node dist/src/main.js`), with what it
 * printed so far.
 */
export interface BuiltServer {
  child: ChildProcess;
  /** stdout so far (pino's JSON lines). */
  readonly stdout: string;
  /** stderr so far (empty unless the process failed, or Node itself warned). */
  readonly stderr: string;
  /** stdout and stderr so far, in the order they arrived. */
  readonly output: string;
  /** The process's exit code once it exits (null when a signal ended it). */
  exited: Promise<number | null>;
  /**
   * The addresses the server logs once it listens: GraphQL's, and the metrics' when METRICS_PORT was set (it is
   * logged after the GraphQL one). Rejects, with everything printed, if the process exits first.
   */
  listening: Promise<{ graphqlUrl: string; metricsUrl: string | null }>;
  /** Whether the process is still running (no exit code, no ending signal yet). */
  isAlive(): boolean;
  /** Sends `signal` (SIGTERM unless given) if the process still runs, and resolves with its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Spawns the built server with `env` over a base of PATH, HOST=127.0.0.1, PORT=0 (a free port) and LOG_LEVEL=info,
 * and collects its output. Nothing is awaited: `listening` says when it serves, `exited` when it stops, so a test
 * (or its afterEach) can kill a process that never got as far as listening.
 */
export function spawnBuiltServer(env: Record<string, string>, options: SpawnOptions = {}): BuiltServer {
  const nodeArgs = [...(options.nodeArgs ?? []), BUILT_MAIN];
  const [command, args] =
    options.openFileLimit === undefined
      ? [process.execPath, nodeArgs]
      : ['bash', ['-c', `ulimit -n ${options.openFileLimit} && exec "$0" "$@"`, process.execPath, ...nodeArgs]];
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => ((stdout += chunk), (output += chunk)));
  child.stderr!.on('data', (chunk: Buffer) => ((stderr += chunk), (output += chunk)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const wantsMetrics = env.METRICS_PORT !== undefined;
  const listening = new Promise<{ graphqlUrl: string; metricsUrl: string | null }>((resolve, reject) => {
    const check = () => {
      const graphqlUrl = /"url":"(http:[^"]+\/graphql)"/.exec(stdout)?.[1];
      const metricsUrl = /"url":"(http:[^"]+\/metrics)"/.exec(stdout)?.[1] ?? null;
      if (graphqlUrl && (metricsUrl || !wantsMetrics)) resolve({ graphqlUrl, metricsUrl });
    };
    child.stdout!.on('data', check);
    void exited.then((code) => reject(new Error(`exited with ${code} before listening:\n${output}`)));
  });
  // A test that only awaits `exited` must not fail on the rejection nobody asked for.
  listening.catch(() => undefined);
  const isAlive = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    get output() {
      return output;
    },
    exited,
    listening,
    isAlive,
    stop(signal = 'SIGTERM') {
      if (isAlive()) child.kill(signal);
      return exited;
    },
  };
}
