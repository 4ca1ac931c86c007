import 'reflect-metadata';
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SYSTEM_ACTOR } from '../src/audit/audit.service';
import { KeyCrypto } from '../src/auth/key-crypto';
import { generateAccessKey } from '../src/auth/key-format';
import { loadConfig } from '../src/config';
import { createDataSource } from '../src/db/data-source';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded-postgres';
import { checkSecret } from '../src/db/runtime';
import { createLogger } from '../src/logger';
import { createServices } from '../src/services';
import { Role } from '../src/users/user.entity';

/**
 * `npm run bench`: the service in its own process on a real PostgreSQL, driven by autocannon from this
 * process. Every scenario is compared with the baseline `{ __typename }` measured on the same server in
 * the same round; rounds interleave the scenarios, and the median of the rounds is reported.
 */
const ROOT = path.join(__dirname, '..', '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 32;
const USERS = 1000;
const MEMORY_REQUESTS = Number(process.env.BENCH_MEMORY_REQUESTS ?? 200_000);
const PASSWORD = 'benchmark password 1';

interface Scenario {
  name: string;
  query: string;
  headers: Record<string, string>;
  /** The status every response must have. */
  status: number;
  /** Targets from the issue: minimum requests/s ratio and maximum p99 ratio to the baseline. */
  minRatio?: number;
  maxP99Ratio?: number;
}

interface Measurement {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  unexpected: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function seed(params: { url: string; secret: Buffer }) {
  const config = loadConfig({ NODE_ENV: 'production', ACCESS_KEY_SECRET: params.secret.toString('base64') });
  const dataSource = createDataSource({ url: params.url, db: config.db });
  await dataSource.initialize();
  await dataSource.runMigrations();
  const keyCrypto = new KeyCrypto(params.secret);
  await checkSecret(dataSource, keyCrypto);
  const services = createServices({ dataSource, databaseUrl: params.url, keyCrypto, logger: createLogger({ level: 'warn' }), config });
  const tag = randomBytes(3).toString('hex');
  const admin = await services.organizations.createWithAdmin({
    name: `Bench ${tag}`,
    adminEmail: `admin-${tag}@bench.example`,
    adminName: 'Bench Admin',
    adminPassword: PASSWORD,
  });
  let member = '';
  await dataSource.transaction(async (manager) => {
    for (let i = 0; i < USERS - 1; i++) {
      const { user } = await services.users.insert(manager, {
        organizationId: admin.organizationId,
        email: `user-${i}-${tag}@bench.example`,
        name: `User ${String(i).padStart(4, '0')}`,
        role: Role.MEMBER,
        actor: SYSTEM_ACTOR,
      });
      member ||= user.id;
    }
  });
  await dataSource.destroy();
  return { admin, memberId: member };
}

async function startServer(params: { url: string; secret: Buffer; port: number }): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), path.join(ROOT, 'dist', 'src', 'main.js')], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      DATABASE_URL: params.url,
      ACCESS_KEY_SECRET: params.secret.toString('base64'),
      PORT: String(params.port),
      LOG_LEVEL: 'warn',
      DB_POOL_SIZE: '16',
      // The malformed-key scenario measures the 401 path, not the rate limiter's 429.
      AUTH_FAILURE_LIMIT: '1000000',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${params.port}/readyz`)).ok) return child;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('the service did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function load(url: string, scenario: Scenario, options: { seconds?: number; amount?: number }): Promise<Measurement> {
  let unexpected = 0;
  const result = await autocannon({
    url,
    method: 'POST',
    connections: CONNECTIONS,
    ...(options.amount ? { amount: options.amount } : { duration: options.seconds }),
    headers: { 'content-type': 'application/json', ...scenario.headers },
    body: JSON.stringify({ query: scenario.query }),
    expectBody: undefined,
    setupClient: (client) => {
      client.on('response', (statusCode: number) => {
        if (statusCode !== scenario.status) unexpected++;
      });
    },
  });
  return { requestsPerSecond: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, unexpected: unexpected + result.errors };
}

const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)];

async function main(): Promise<void> {
  const secret = randomBytes(32);
  let embedded: EmbeddedPostgres | null = null;
  let tempDir: string | null = null;
  let url = process.env.DATABASE_URL;
  if (!url) {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-bench-'));
    fs.chmodSync(tempDir, 0o755);
    embedded = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), log: () => undefined });
    url = embedded.url;
  }
  let server: ChildProcess | null = null;
  try {
    process.stderr.write(`seeding ${USERS} users...\n`);
    const { admin, memberId } = await seed({ url, secret });
    const port = await freePort();
    server = await startServer({ url, secret, port });
    const graphqlUrl = `http://127.0.0.1:${port}/graphql`;
    const login = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `mutation { login(email: "${admin.adminEmail}", password: "${PASSWORD}") { token } }` }),
    });
    const token = ((await login.json()) as { data: { login: { token: string } } }).data.login.token;
    const malformed = generateAccessKey().slice(0, -1) + 'x';

    const key = { 'x-access-key': admin.adminAccessKey };
    const scenarios: Scenario[] = [
      { name: 'baseline { __typename }', query: '{ __typename }', headers: {}, status: 200 },
      { name: 'me, X-Access-Key', query: '{ me { id email role } }', headers: key, status: 200, minRatio: 0.9, maxP99Ratio: 1.5 },
      { name: 'me, session token', query: '{ me { id email role } }', headers: { authorization: `Bearer ${token}` }, status: 200 },
      { name: 'admin user(id) { accessKey }', query: `{ user(id: "${memberId}") { accessKey } }`, headers: key, status: 200, minRatio: 0.5 },
      {
        name: 'admin users(first: 100) { accessKey }',
        query: '{ users(first: 100) { edges { node { id email accessKey } } } }',
        headers: key,
        status: 200,
      },
      { name: 'malformed key (401)', query: '{ me { id } }', headers: { 'x-access-key': malformed }, status: 401, minRatio: 0.95 },
    ];

    const only = process.env.BENCH_ONLY?.split(',');
    if (only) scenarios.splice(1, scenarios.length, ...scenarios.slice(1).filter((s) => only.some((o) => s.name.includes(o))));
    process.stderr.write('warming up...\n');
    for (const scenario of scenarios) await load(graphqlUrl, scenario, { seconds: 2 });

    // Each scenario is paired with a baseline run just before it, so both see the same machine weather;
    // rounds repeat the whole interleaved sequence and the medians of the rounds are reported.
    const rounds: Array<Array<{ scenario: Measurement; baseline: Measurement }>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const measured = [];
      for (const scenario of scenarios) {
        const baseline = await load(graphqlUrl, scenarios[0], { seconds: SECONDS });
        const result = scenario === scenarios[0] ? baseline : await load(graphqlUrl, scenario, { seconds: SECONDS });
        measured.push({ scenario: result, baseline });
        process.stderr.write(
          `round ${round + 1}: ${scenario.name}: ${Math.round(result.requestsPerSecond)} req/s ` +
            `(baseline ${Math.round(baseline.requestsPerSecond)})\n`,
        );
      }
      rounds.push(measured);
    }

    const rows = scenarios.map((scenario, i) => {
      const ratios = rounds.map((r) => r[i].scenario.requestsPerSecond / r[i].baseline.requestsPerSecond);
      const p99Ratios = rounds.map((r) => r[i].scenario.p99 / Math.max(r[i].baseline.p99, 1));
      const row = {
        scenario: scenario.name,
        requestsPerSecond: Math.round(median(rounds.map((r) => r[i].scenario.requestsPerSecond))),
        p50Ms: median(rounds.map((r) => r[i].scenario.p50)),
        p99Ms: median(rounds.map((r) => r[i].scenario.p99)),
        ratio: Number(median(ratios).toFixed(3)),
        p99Ratio: Number(median(p99Ratios).toFixed(2)),
        unexpectedResponses: rounds.reduce((sum, r) => sum + r[i].scenario.unexpected, 0),
        target: [scenario.minRatio ? `ratio >= ${scenario.minRatio}` : '', scenario.maxP99Ratio ? `p99 <= ${scenario.maxP99Ratio}x` : '']
          .filter(Boolean)
          .join(', '),
        met: true,
      };
      row.met =
        row.unexpectedResponses === 0 &&
        (!scenario.minRatio || row.ratio >= scenario.minRatio) &&
        (!scenario.maxP99Ratio || row.p99Ratio <= scenario.maxP99Ratio);
      return row;
    });

    process.stderr.write(`memory: ${MEMORY_REQUESTS} authenticated requests...\n`);
    const rssBefore = rssMb(server.pid!);
    const memoryRun = await load(graphqlUrl, scenarios[1], { amount: MEMORY_REQUESTS });
    const rssAfter = rssMb(server.pid!);
    const memory = {
      requests: MEMORY_REQUESTS,
      rssAfterWarmupMb: Math.round(rssBefore),
      rssAfterMb: Math.round(rssAfter),
      growthMb: Number((rssAfter - rssBefore).toFixed(1)),
      target: 'growth <= 50 MB',
      met: rssAfter - rssBefore <= 50 && memoryRun.unexpected === 0,
    };

    const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${embedded ? 'embedded PostgreSQL 15' : 'DATABASE_URL'}`;
    const results = {
      date: new Date().toISOString(),
      machine,
      settings: { connections: CONNECTIONS, secondsPerScenario: SECONDS, rounds: ROUNDS, users: USERS },
      scenarios: rows,
      memory,
    };
    fs.writeFileSync(path.join(ROOT, 'bench', 'results.json'), JSON.stringify(results, null, 2) + '\n');

    const table = [
      '| scenario | req/s | p50 ms | p99 ms | ratio to baseline | p99 ratio | target | met |',
      '|---|---:|---:|---:|---:|---:|---|---|',
      ...rows.map((r) => `| ${r.scenario} | ${r.requestsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.ratio} | ${r.p99Ratio} | ${r.target} | ${r.met ? 'yes' : 'NO'} |`),
      '',
      `Memory: RSS ${memory.rssAfterWarmupMb} MB after warm-up, ${memory.rssAfterMb} MB after ${MEMORY_REQUESTS} key-authenticated requests (growth ${memory.growthMb} MB; target <= 50 MB: ${memory.met ? 'met' : 'NOT met'}).`,
      `Machine: ${machine}; ${CONNECTIONS} connections, ${SECONDS} s per run, each scenario paired with a baseline run ` +
        `just before it, ${ROUNDS} interleaved rounds, medians.`,
    ].join('\n');
    process.stdout.write(table + '\n');
    if (!rows.every((r) => r.met) || !memory.met) process.exitCode = 1;
  } finally {
    server?.kill('SIGTERM');
    if (server) await new Promise((resolve) => server!.once('exit', resolve));
    await embedded?.stop();
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
