import 'reflect-metadata';

import { type ChildProcess, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import autocannon from 'autocannon';

import { KeyCrypto } from '../src/access-keys/key-crypto';
import { generateAccessKey } from '../src/access-keys/key-format';
import { SYSTEM_ACTOR } from '../src/audit/audit.service';
import { loadConfig } from '../src/config';
import { createDataSource } from '../src/db/data-source';
import { checkSecret } from '../src/db/runtime';
import { createLogger } from '../src/logger';
import { createServices } from '../src/server/services';
import { Role } from '../src/users/user.entity';
import type { MemoryReading } from './memory-probe';
import { type ReferenceBuild, startReferenceBuild } from './reference-build';
import {
  benchDatabaseServer,
  freePort,
  freshDatabase,
  percentile,
  startServiceProcess,
  stopServer,
} from './server-process';

/**
 * `npm run bench`: the service in its own process on a real PostgreSQL, driven by autocannon from this
 * process. Every run of a scenario is compared with the baseline `{ __typename }` runs on the same server
 * just before and after it; rounds interleave the scenarios, and medians of all runs are reported. The bare
 * stack (bench/floor-server.ts: Apollo + Fastify + graphql-js, hand-written resolvers) runs beside it and
 * answers the same requests the same way, in turns with the service, scenario by scenario; each scenario is
 * also reported as a ratio to the bare stack's same request (the median of run-by-run ratios). With
 * BENCH_REFERENCE_DIR, a reference build (bench/reference-build.ts) answers the users page in turns with them,
 * and the service's CPU per request for the page is reported as a ratio to the reference build's.
 */
const ROOT = path.join(__dirname, '..', '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Runs of each scenario per round, each between two baseline runs. */
const RUNS_PER_ROUND = Number(process.env.BENCH_RUNS_PER_ROUND ?? 3);
/** V8 needs this long under load before the service's hot paths are optimized and its speed settles. */
const WARM_UP_SECONDS = Number(process.env.BENCH_WARM_UP_SECONDS ?? 12);
const CONNECTIONS = 32;
/** A latency's floor in a ratio's denominator (ms): a microsecond, so that an empty run cannot divide by zero. */
const MIN_LATENCY_MS = 0.001;
const USERS = 1000;
/** At least 2: the memory check reads the heap after each half of them. */
const MEMORY_REQUESTS = Math.max(2, Number(process.env.BENCH_MEMORY_REQUESTS ?? 200_000));
/**
 * Live heap (after a full GC) may grow this much over MEMORY_REQUESTS: about 25 bytes a request at the default
 * 200,000, far above the noise of a reading (under 1 MB) and far below what anything kept per request would add.
 */
const MAX_HEAP_GROWTH_MB = 5;
/** RSS after a full GC may grow this much (the earlier target, now read at a comparable moment). */
const MAX_RSS_GROWTH_MB = 50;
const PASSWORD = 'benchmark password 1';
/**
 * Another checkout of this repository, installed and built (`npm ci && npm run build`), to measure the users
 * page against: issue 17's Done-when 2 asks for a third of the CPU of the code it measured (60ee081).
 */
const REFERENCE_DIR = process.env.BENCH_REFERENCE_DIR || null;

/**
 * The service gets a core of its own and the load generator (this process) the other, so the two don't
 * take turns on one core and the ratios measure the service. PostgreSQL is left to the scheduler.
 */
const SERVER_CPU = 1;
const LOAD_CPU = 0;
const PIN = process.env.BENCH_PIN !== 'false' && os.cpus().length >= 2 && spawnSync('taskset', ['-V']).status === 0;

interface Scenario {
  name: string;
  query: string;
  headers: Record<string, string>;
  /** The status every response must have. */
  status: number;
  /** Targets from the issue: minimum requests/s ratio to the service's baseline. */
  minRatio?: number;
  /** Targets from the issue: minimum requests/s ratio, maximum p99 ratio, to the bare stack's same request. */
  minFloorRatio?: number;
  maxFloorP99Ratio?: number;
  /** Target from the issue: at most this share of the reference build's CPU per request (BENCH_REFERENCE_DIR). */
  maxReferenceCpu?: { share: number; label: string };
  /** Target from the issue without a reference build: at most this much CPU per request, in microseconds. */
  maxServiceCpu?: { us: number; label: string };
}

interface Measurement {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  unexpected: number;
  /** CPU time the service's process spent per request: what the ratios come from when the service is the bottleneck. */
  serviceCpuUs: number;
  /** Share of a core the load generator used: it must not be the bottleneck. */
  loadGeneratorCpu: number;
}

/** Where the load goes: the service's GraphQL URL, and its process, whose CPU time is read per run. */
interface Target {
  url: string;
  pid: number;
  /**
   * What this server is sent for a scenario, or null for a scenario it does not run; the scenario itself when
   * absent. The reference build runs only the users page, with its own admin's key.
   */
  requestFor?: (scenario: Scenario) => Scenario | null;
}

const requestFor = (target: Target, scenario: Scenario) => (target.requestFor ? target.requestFor(scenario) : scenario);

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/** User + system CPU seconds of a process so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function seed(params: { url: string; secret: Buffer }) {
  const config = loadConfig({ NODE_ENV: 'production', ACCESS_KEY_SECRET: params.secret.toString('base64') });
  const dataSource = createDataSource({ url: params.url, db: config.db });
  await dataSource.initialize();
  await dataSource.runMigrations();
  const keyCrypto = new KeyCrypto(params.secret);
  await checkSecret(dataSource, keyCrypto);
  const services = createServices({
    dataSource,
    databaseUrl: params.url,
    keyCrypto,
    logger: createLogger({ level: 'warn' }),
    config,
  });
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

/**
 * The service (or, with `entry`, the bare stack's server) in its own process, pinned to its own core. `nodeArgs`
 * go before BENCH_NODE_ARGS; `ipc` opens a channel to it (see startServiceProcess).
 */
function startServer(params: Omit<Parameters<typeof startServiceProcess>[0], 'cpu'>): Promise<ChildProcess> {
  return startServiceProcess({
    ...params,
    nodeArgs: [...(params.nodeArgs ?? []), ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])],
    cpu: PIN ? SERVER_CPU : undefined,
    env: {
      DB_POOL_SIZE: '16',
      // The malformed-key scenario measures the 401 path, not the rate limiter's 429.
      AUTH_FAILURE_LIMIT: '1000000',
      ...params.env,
    },
  });
}

/**
 * One run of `scenario` against `target` (for `seconds`, or `amount` requests) from 32 connections. Latencies are
 * the load generator's own per-response times (milliseconds, fractional, responses of the expected status only),
 * not autocannon's histogram, which keeps whole milliseconds: at p99s of 6-8 ms a p99 ratio could only move in
 * steps of a sixth, so one millisecond decided a "p99 <= 1.3x" target (8/6 = 1.33, 7/6 = 1.17).
 */
async function load(
  target: Target,
  scenario: Scenario,
  options: { seconds?: number; amount?: number },
): Promise<Measurement> {
  let unexpected = 0;
  const latenciesMs: number[] = [];
  const serviceCpuBefore = cpuSeconds(target.pid);
  const ownCpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const result = await autocannon({
    url: target.url,
    method: 'POST',
    connections: CONNECTIONS,
    ...(options.amount ? { amount: options.amount } : { duration: options.seconds }),
    headers: { 'content-type': 'application/json', ...scenario.headers },
    body: JSON.stringify({ query: scenario.query }),
    expectBody: undefined,
    setupClient: (client) => {
      client.on('response', (statusCode: number, _bytes: number, durationMs: number) => {
        if (statusCode !== scenario.status) unexpected++;
        else latenciesMs.push(durationMs);
      });
    },
  });
  const ownCpu = process.cpuUsage(ownCpuBefore);
  const elapsedUs = (performance.now() - startedAt) * 1000;
  latenciesMs.sort((x, y) => x - y);
  return {
    requestsPerSecond: result.requests.average,
    p50: latenciesMs.length > 0 ? percentile(latenciesMs, 50) : 0,
    p99: latenciesMs.length > 0 ? percentile(latenciesMs, 99) : 0,
    unexpected: unexpected + result.errors,
    serviceCpuUs: ((cpuSeconds(target.pid) - serviceCpuBefore) * 1e6) / Math.max(result.requests.total, 1),
    loadGeneratorCpu: (ownCpu.user + ownCpu.system) / elapsedUs,
  };
}

const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)];

interface PairedRun {
  scenario: Measurement;
  /** The mean of the baseline runs just before and just after this one. */
  baseline: Measurement;
}

/**
 * One round of a scenario: RUNS_PER_ROUND runs, each between two baseline runs on the same server. This
 * machine's speed drifts by 10-20% over seconds (other tenants, clocks), so a scenario is never compared
 * with a baseline measured long before it; the mean of the runs around it cancels a steady drift.
 */
async function pairedRuns(params: {
  target: Target;
  baseline: Scenario;
  scenario: Scenario;
  round: number;
  baselineRuns?: Measurement[];
}): Promise<PairedRun[]> {
  const { target, scenario } = params;
  const paired: PairedRun[] = [];
  let before = await load(target, params.baseline, { seconds: SECONDS });
  params.baselineRuns?.push(before);
  for (let i = 0; i < RUNS_PER_ROUND; i++) {
    const result = await load(target, scenario, { seconds: SECONDS });
    const after = await load(target, params.baseline, { seconds: SECONDS });
    params.baselineRuns?.push(after);
    const mean = (pick: (m: Measurement) => number) => (pick(before) + pick(after)) / 2;
    const baseline: Measurement = {
      requestsPerSecond: mean((m) => m.requestsPerSecond),
      p50: mean((m) => m.p50),
      p99: mean((m) => m.p99),
      // A wrong answer in a baseline run makes the ratios around it meaningless: counted like the scenario's.
      unexpected: before.unexpected + after.unexpected,
      serviceCpuUs: mean((m) => m.serviceCpuUs),
      loadGeneratorCpu: mean((m) => m.loadGeneratorCpu),
    };
    paired.push({ scenario: result, baseline });
    before = after;
  }
  process.stderr.write(
    `round ${params.round + 1}: ${scenario.name}: ` +
      paired
        .map(
          (r) =>
            `${Math.round(r.scenario.requestsPerSecond)}/${Math.round(r.baseline.requestsPerSecond)} (${Math.round(r.scenario.serviceCpuUs)}/${Math.round(r.baseline.serviceCpuUs)} us)`,
        )
        .join(' ') +
      ' req/s and service CPU per request (scenario/baseline)\n',
  );
  return paired;
}

/** What measureRounds gives back for one server: each scenario's paired runs, and every baseline run. */
interface ServerRuns {
  runs: Map<Scenario, PairedRun[]>;
  baselineRuns: Measurement[];
}

/**
 * Warms each server up, then runs ROUNDS interleaved rounds of `scenarios` against `baseline`: in each round,
 * every scenario runs through pairedRuns on one server, then on the next (those that run it: Target.requestFor),
 * before the next scenario. So the service, the reference build and the bare stack answer each scenario within
 * seconds of each other, and a drift of the machine's speed (10-20% over minutes here) moves them alike instead
 * of showing up as a ratio between them. Each server's runs are keyed by the scenarios as given.
 */
async function measureRounds(params: {
  targets: Target[];
  baseline: Scenario;
  scenarios: Scenario[];
}): Promise<ServerRuns[]> {
  const { targets, baseline, scenarios } = params;
  for (const target of targets) {
    await load(target, baseline, { seconds: WARM_UP_SECONDS });
    for (const scenario of scenarios) {
      const request = requestFor(target, scenario);
      if (request) await load(target, request, { seconds: 3 });
    }
  }
  const measured: ServerRuns[] = targets.map((target) => ({
    runs: new Map<Scenario, PairedRun[]>(scenarios.filter((s) => requestFor(target, s)).map((s) => [s, []])),
    baselineRuns: [],
  }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const scenario of scenarios) {
      for (let i = 0; i < targets.length; i++) {
        const request = requestFor(targets[i], scenario);
        if (!request) continue;
        const paired = await pairedRuns({
          target: targets[i],
          baseline,
          scenario: request,
          round,
          baselineRuns: measured[i].baselineRuns,
        });
        measured[i].runs.get(scenario)!.push(...paired);
      }
    }
  }
  return measured;
}

/**
 * A scenario's row of the table: medians of its runs and of their ratios to the baselines around them, and
 * of their ratios to the same request's runs on the bare stack (`floor`) and on the reference build (`reference`).
 */
function summarize(params: {
  scenario: Scenario;
  measured: PairedRun[];
  floor?: PairedRun[];
  reference?: PairedRun[];
}) {
  const { scenario, measured } = params;
  const ratios = measured.map((r) => r.scenario.requestsPerSecond / r.baseline.requestsPerSecond);
  const p99Ratios = measured.map((r) => r.scenario.p99 / Math.max(r.baseline.p99, MIN_LATENCY_MS));
  const row = {
    scenario: scenario.name,
    requestsPerSecond: Math.round(median(measured.map((r) => r.scenario.requestsPerSecond))),
    p50Ms: Number(median(measured.map((r) => r.scenario.p50)).toFixed(2)),
    p99Ms: Number(median(measured.map((r) => r.scenario.p99)).toFixed(2)),
    ratio: Number(median(ratios).toFixed(3)),
    p99Ratio: Number(median(p99Ratios).toFixed(2)),
    serviceCpuUsPerRequest: Math.round(median(measured.map((r) => r.scenario.serviceCpuUs))),
    serviceCpuRatio: Number(median(measured.map((r) => r.baseline.serviceCpuUs / r.scenario.serviceCpuUs)).toFixed(3)),
    loadGeneratorCpu: Number(median(measured.map((r) => r.scenario.loadGeneratorCpu)).toFixed(2)),
    // Every run the row's numbers come from: the service's, its baselines', and those of the bare stack and the
    // reference build it is compared with (a server answering errors fast would flatter or sink a ratio).
    unexpectedResponses: [measured, params.floor, params.reference].reduce(
      (sum, runs) =>
        sum + (runs ?? []).reduce((runSum, r) => runSum + r.scenario.unexpected + r.baseline.unexpected, 0),
      0,
    ),
    ...compareWithFloor(measured, params.floor),
    ...compareWithReference(measured, params.reference),
    target: [
      scenario.minRatio ? `ratio >= ${scenario.minRatio}` : '',
      scenario.minFloorRatio ? `bare-stack ratio >= ${scenario.minFloorRatio}` : '',
      scenario.maxFloorP99Ratio ? `p99 <= ${scenario.maxFloorP99Ratio}x bare stack` : '',
      scenario.maxReferenceCpu ? `CPU <= ${scenario.maxReferenceCpu.label} of the reference build's` : '',
      scenario.maxServiceCpu
        ? `CPU <= ${scenario.maxServiceCpu.us.toLocaleString('en-US')} us (${scenario.maxServiceCpu.label})`
        : '',
    ]
      .filter(Boolean)
      .join(', '),
    met: true,
  };
  row.met =
    row.unexpectedResponses === 0 &&
    (!scenario.minRatio || row.ratio >= scenario.minRatio) &&
    (!scenario.minFloorRatio || (row.floorRatio ?? 0) >= scenario.minFloorRatio) &&
    (!scenario.maxFloorP99Ratio || (row.floorP99Ratio ?? Infinity) <= scenario.maxFloorP99Ratio) &&
    (!scenario.maxReferenceCpu || (row.cpuShareOfReference ?? Infinity) <= scenario.maxReferenceCpu.share) &&
    (!scenario.maxServiceCpu || row.serviceCpuUsPerRequest <= scenario.maxServiceCpu.us);
  return row;
}

/**
 * The median over the pairs of the service's i-th run and `other`'s i-th run of a request of `ratio(service,
 * other)`. measureRounds runs the servers in turns, so the runs of a pair were seconds apart, and a drift of
 * the machine between rounds cancels out.
 */
function pairedMedian(params: {
  measured: PairedRun[];
  other: PairedRun[];
  ratio: (service: Measurement, other: Measurement) => number;
}): number {
  const { measured, other } = params;
  if (other.length !== measured.length) throw new Error('the servers compared ran different numbers of runs');
  return median(measured.map((run, i) => params.ratio(run.scenario, other[i].scenario)));
}

/** The service's runs of a scenario against the bare stack's runs of the same request: requests/s, p99 and CPU per request. */
function compareWithFloor(measured: PairedRun[], floor: PairedRun[] | undefined) {
  if (!floor?.length) return { floorRatio: null, floorP99Ratio: null, floorCpuRatio: null };
  const paired = (ratio: (service: Measurement, bare: Measurement) => number) =>
    pairedMedian({ measured, other: floor, ratio });
  return {
    floorRatio: Number(paired((service, bare) => service.requestsPerSecond / bare.requestsPerSecond).toFixed(3)),
    floorP99Ratio: Number(paired((service, bare) => service.p99 / Math.max(bare.p99, MIN_LATENCY_MS)).toFixed(2)),
    floorCpuRatio: Number(paired((service, bare) => bare.serviceCpuUs / service.serviceCpuUs).toFixed(3)),
  };
}

/**
 * The service's runs of a scenario against the reference build's runs of it (BENCH_REFERENCE_DIR): the reference
 * build's CPU per request (median, in microseconds), and the service's CPU per request as a share of it (the
 * median of run-by-run shares; lower is better, unlike floorCpuRatio). Nothing for a scenario it did not run.
 */
function compareWithReference(
  measured: PairedRun[],
  reference: PairedRun[] | undefined,
): { referenceCpuUsPerRequest?: number; cpuShareOfReference?: number } {
  if (!reference?.length) return {};
  return {
    referenceCpuUsPerRequest: Math.round(median(reference.map((r) => r.scenario.serviceCpuUs))),
    cpuShareOfReference: Number(
      pairedMedian({
        measured,
        other: reference,
        ratio: (service, ref) => service.serviceCpuUs / ref.serviceCpuUs,
      }).toFixed(3),
    ),
  };
}

/** Memory after full collections (bench/memory-probe.ts), in MB. */
interface MemoryPoint {
  heapUsedMb: number;
  rssMb: number;
}

const toMb = (bytes: number) => Number((bytes / 2 ** 20).toFixed(1));

/** Asks the probe in `server` for a reading: it collects garbage fully first. */
function readMemory(server: ChildProcess): Promise<MemoryPoint> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: MemoryReading) => {
      if (message?.type !== 'memory') return;
      server.off('message', onMessage);
      server.off('exit', onExit);
      resolve({ heapUsedMb: toMb(message.heapUsedBytes), rssMb: toMb(message.rssBytes) });
    };
    const onExit = () => reject(new Error('the server exited before it reported its memory'));
    server.on('message', onMessage);
    server.once('exit', onExit);
    server.send({ type: 'memory' });
  });
}

/**
 * Whether the service keeps memory per request. A fresh service process, with bench/memory-probe.ts preloaded,
 * gets the key-authenticated `me` until its path is compiled and its heap has settled, then MEMORY_REQUESTS more
 * in two halves; after the warm-up and after each half the probe collects garbage fully and reads the heap in
 * use and the RSS. A leak is live heap that grows with requests; under load, RSS read without a full
 * collection is mostly garbage V8 has not collected yet (it swung between about 100 and 290 MB with the heap
 * after a full collection flat at 28 MB; docs/performance.md), so the peak is reported but not judged.
 */
async function measureMemory(params: { url: string; secret: Buffer; scenario: Scenario }) {
  const port = await freePort();
  const server = await startServer({
    url: params.url,
    secret: params.secret,
    port,
    ipc: true,
    nodeArgs: ['--expose-gc', '--require', path.join(__dirname, 'memory-probe.js')],
  });
  try {
    const target: Target = { url: `http://127.0.0.1:${port}/graphql`, pid: server.pid! };
    // The same requests, until V8 has compiled their path and the heap has settled.
    await load(target, params.scenario, { amount: Math.min(MEMORY_REQUESTS, 30_000) });
    const afterWarmUp = await readMemory(server);
    const half = Math.ceil(MEMORY_REQUESTS / 2);
    const first = await load(target, params.scenario, { amount: half });
    const afterHalf = await readMemory(server);
    const second = await load(target, params.scenario, { amount: MEMORY_REQUESTS - half });
    const after = await readMemory(server);
    const peakRssMb = Number((peakRssKb(server.pid!) / 1024).toFixed(1));
    const heapGrowthMb = Number((after.heapUsedMb - afterWarmUp.heapUsedMb).toFixed(1));
    const rssGrowthMb = Number((after.rssMb - afterWarmUp.rssMb).toFixed(1));
    const unexpected = first.unexpected + second.unexpected;
    return {
      requests: MEMORY_REQUESTS,
      measuredAfter: 'full garbage collection',
      heapUsedMb: { afterWarmUp: afterWarmUp.heapUsedMb, afterHalf: afterHalf.heapUsedMb, after: after.heapUsedMb },
      rssMb: { afterWarmUp: afterWarmUp.rssMb, afterHalf: afterHalf.rssMb, after: after.rssMb },
      heapGrowthMb,
      rssGrowthMb,
      peakRssMb,
      unexpectedResponses: unexpected,
      target: `heap growth <= ${MAX_HEAP_GROWTH_MB} MB, RSS growth <= ${MAX_RSS_GROWTH_MB} MB (both after a full GC)`,
      met: heapGrowthMb <= MAX_HEAP_GROWTH_MB && rssGrowthMb <= MAX_RSS_GROWTH_MB && unexpected === 0,
    };
  } finally {
    await stopServer(server);
  }
}

/** The most RSS the process has had since it started (VmHWM), in kB. */
function peakRssKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]);
}

function memoryLine(memory: Awaited<ReturnType<typeof measureMemory>>): string {
  const { heapUsedMb: heap, rssMb: rss } = memory;
  return (
    `Memory after a full GC: heap in use ${heap.afterWarmUp} MB after warm-up, ${heap.afterHalf} MB after ` +
    `${Math.ceil(memory.requests / 2)} and ${heap.after} MB after ${memory.requests} key-authenticated requests ` +
    `(growth ${memory.heapGrowthMb} MB; target <= ${MAX_HEAP_GROWTH_MB} MB); RSS ${rss.afterWarmUp}, ${rss.afterHalf}, ` +
    `${rss.after} MB (growth ${memory.rssGrowthMb} MB; target <= ${MAX_RSS_GROWTH_MB} MB): ` +
    `${memory.met ? 'met' : 'NOT met'}. Peak RSS under load ${memory.peakRssMb} MB (garbage not yet collected; not judged).`
  );
}

async function main(): Promise<void> {
  const secret = randomBytes(32);
  const databaseServer = await benchDatabaseServer('crm-access-bench');
  const { embedded } = databaseServer;
  // A database of its own on that server, dropped at the end: with DATABASE_URL, the bench never migrates or seeds
  // the database the URL names (a service's own, whose ACCESS_KEY_SECRET is not the bench's).
  const database = await freshDatabase({ serverUrl: databaseServer.url, prefix: 'crm_access_bench' }).catch(
    async (error: unknown) => {
      await databaseServer.stop();
      throw error;
    },
  );
  const { url } = database;
  let server: ChildProcess | null = null;
  let floorServer: ChildProcess | null = null;
  let reference: ReferenceBuild | null = null;
  try {
    process.stderr.write(`seeding ${USERS} users...\n`);
    const { admin, memberId } = await seed({ url, secret });
    const port = await freePort();
    server = await startServer({ url, secret, port });
    if (PIN) spawnSync('taskset', ['-a', '-p', '-c', String(LOAD_CPU), String(process.pid)]);
    const graphqlUrl = `http://127.0.0.1:${port}/graphql`;
    const service: Target = { url: graphqlUrl, pid: server.pid! };
    const login = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: `mutation { login(email: "${admin.adminEmail}", password: "${PASSWORD}") { token } }`,
      }),
    });
    const token = ((await login.json()) as { data: { login: { token: string } } }).data.login.token;
    const malformed = generateAccessKey().slice(0, -1) + 'x';

    const key = { 'x-access-key': admin.adminAccessKey };
    // Done-when 2 of issue 17: a third of the CPU per request of the code it measured, run beside the service;
    // without that build at hand, a third of the 8,630 us the issue reported (measured on another machine).
    const usersPage: Scenario = {
      name: 'admin users(first: 100) { accessKey }',
      query: '{ users(first: 100) { edges { node { id email accessKey } } } }',
      headers: key,
      status: 200,
      ...(REFERENCE_DIR
        ? { maxReferenceCpu: { share: 1 / 3, label: 'a third' } }
        : { maxServiceCpu: { us: 2877, label: 'a third of 8,630' } }),
    };
    const scenarios: Scenario[] = [
      {
        name: 'baseline { __typename }',
        query: '{ __typename }',
        headers: {},
        status: 200,
        minFloorRatio: 0.85,
        maxFloorP99Ratio: 1.3,
      },
      {
        name: 'me, X-Access-Key',
        query: '{ me { id email role } }',
        headers: key,
        status: 200,
        minFloorRatio: 0.8,
        maxFloorP99Ratio: 1.3,
      },
      {
        name: 'me, session token',
        query: '{ me { id email role } }',
        headers: { authorization: `Bearer ${token}` },
        status: 200,
      },
      {
        name: 'admin user(id) { accessKey }',
        query: `{ user(id: "${memberId}") { accessKey } }`,
        headers: key,
        status: 200,
        minRatio: 0.5,
      },
      usersPage,
      {
        name: 'malformed key (401)',
        query: '{ me { id } }',
        headers: { 'x-access-key': malformed },
        status: 401,
        minRatio: 0.95,
      },
    ];

    const only = process.env.BENCH_ONLY?.split(',');
    if (only)
      scenarios.splice(1, scenarios.length, ...scenarios.slice(1).filter((s) => only.some((o) => s.name.includes(o))));
    // The users page on the reference build, with its own admin's key, in turns with the service.
    let referenceTarget: Target | null = null;
    if (REFERENCE_DIR) {
      if (!scenarios.includes(usersPage))
        throw new Error(`BENCH_REFERENCE_DIR measures "${usersPage.name}", which BENCH_ONLY leaves out`);
      process.stderr.write(`reference build in ${REFERENCE_DIR}: its database, migrations and ${USERS} users...\n`);
      reference = await startReferenceBuild({
        directory: REFERENCE_DIR,
        serverUrl: databaseServer.url,
        secret,
        users: USERS,
        start: startServer,
      });
      const referencePage: Scenario = {
        name: `reference ${reference.revision}: ${usersPage.name}`,
        query: usersPage.query,
        headers: { 'x-access-key': reference.adminAccessKey },
        status: usersPage.status,
      };
      referenceTarget = {
        url: reference.url,
        pid: reference.pid,
        requestFor: (scenario) => (scenario === usersPage ? referencePage : null),
      };
    }
    // The same requests (headers included) on the bare stack, measured the same way against its own
    // `{ __typename }`, in turns with the service (measureRounds): what each costs before any of the service's work.
    let floorTarget: Target | null = null;
    if (process.env.BENCH_FLOOR !== 'false') {
      const floorPort = await freePort();
      floorServer = await startServer({
        url,
        secret,
        port: floorPort,
        entry: path.join(ROOT, 'dist', 'bench', 'floor-server.js'),
        env: { FLOOR_ACCESS_KEY: admin.adminAccessKey },
      });
      floorTarget = { url: `http://127.0.0.1:${floorPort}/graphql`, pid: floorServer.pid! };
    }
    process.stderr.write(
      'warming up; then each scenario on the service' +
        (referenceTarget ? ', then the users page on the reference build' : '') +
        (floorTarget ? ', then each on the bare stack (Apollo + Fastify + graphql-js)' : '') +
        '...\n',
    );
    const targets = [service, referenceTarget, floorTarget].filter((target) => target !== null);
    const measured = await measureRounds({ targets, baseline: scenarios[0], scenarios: scenarios.slice(1) });
    const { runs, baselineRuns } = measured[0];
    const floor = floorTarget ? measured[targets.indexOf(floorTarget)] : null;
    const floorRuns = floor?.runs ?? null;
    const floorBaselineRuns = floor?.baselineRuns ?? [];
    const referenceRuns = referenceTarget ? measured[targets.indexOf(referenceTarget)] : null;
    await stopServer(server);
    server = null;
    if (floorServer) await stopServer(floorServer);
    floorServer = null;
    await reference?.stop();

    const asRuns = (baseline: Measurement[]) => baseline.map((run) => ({ scenario: run, baseline: run }));
    const rows = scenarios.map((scenario, i) =>
      summarize({
        scenario,
        measured: runs.get(scenario) ?? asRuns(baselineRuns),
        floor: floorRuns ? (i === 0 ? asRuns(floorBaselineRuns) : floorRuns.get(scenario)) : undefined,
        reference: referenceRuns?.runs.get(scenario),
      }),
    );
    /** Another server's rows, named `label`: each scenario it ran, measured against its own baseline. */
    const otherRows = (label: string, other: ServerRuns) =>
      scenarios
        .filter((scenario, i) => i === 0 || other.runs.has(scenario))
        .map((scenario, i) =>
          summarize({
            scenario: {
              name: `${label}: ${scenario.name}`,
              query: scenario.query,
              headers: scenario.headers,
              status: scenario.status,
            },
            measured: i === 0 ? asRuns(other.baselineRuns) : other.runs.get(scenario)!,
          }),
        );
    const floorRows = floor ? otherRows('bare stack', floor) : [];
    const referenceRows = referenceRuns && reference ? otherRows(`reference ${reference.revision}`, referenceRuns) : [];
    const usersPageRow = rows.find((row) => row.scenario === usersPage.name);

    process.stderr.write(`memory: ${MEMORY_REQUESTS} authenticated requests...\n`);
    const memory = await measureMemory({ url, secret, scenario: scenarios[1] });

    const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${embedded ? 'embedded PostgreSQL 15' : 'DATABASE_URL'}`;
    const results = {
      date: new Date().toISOString(),
      machine,
      settings: {
        connections: CONNECTIONS,
        secondsPerRun: SECONDS,
        runsPerRound: RUNS_PER_ROUND,
        rounds: ROUNDS,
        warmUpSeconds: WARM_UP_SECONDS,
        pinned: PIN,
        users: USERS,
      },
      scenarios: rows,
      bareStack: floorRows,
      reference: reference && {
        directory: reference.directory,
        revision: reference.revision,
        users: reference.users,
        scenarios: referenceRows,
      },
      memory,
    };
    fs.writeFileSync(path.join(ROOT, 'bench', 'results.json'), JSON.stringify(results, null, 2) + '\n');

    const table = [
      '| scenario | req/s | p50 ms | p99 ms | ratio to baseline | p99 ratio | service CPU us/req | CPU ratio | vs bare stack: req/s | p99 | CPU | target | met |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.scenario} | ${r.requestsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.ratio} | ${r.p99Ratio} | ` +
          `${r.serviceCpuUsPerRequest} | ${r.serviceCpuRatio} | ${r.floorRatio ?? '-'} | ${r.floorP99Ratio ?? '-'} | ${r.floorCpuRatio ?? '-'} | ` +
          `${r.target} | ${r.met ? 'yes' : 'NO'} |`,
      ),
      '',
      ...serverTable('The bare stack (bench/floor-server.ts) answering the same requests:', floorRows),
      ...(reference
        ? serverTable(
            `The reference build (${reference.revision}, ${reference.directory}; its own database of ${reference.users} users) ` +
              `answering the users page:`,
            referenceRows,
          )
        : []),
      ...(usersPageRow?.cpuShareOfReference !== undefined
        ? [
            `The service's CPU per request for the users page: ${usersPageRow.cpuShareOfReference} of the reference ` +
              `build's (${usersPageRow.serviceCpuUsPerRequest} against ${usersPageRow.referenceCpuUsPerRequest} us; the ` +
              `median of ${ROUNDS * RUNS_PER_ROUND} run-by-run ratios); target <= a third: ${usersPageRow.met ? 'met' : 'NOT met'}.`,
            '',
          ]
        : []),
      memoryLine(memory),
      `Machine: ${machine}; ${CONNECTIONS} connections, ${SECONDS} s per run, ${WARM_UP_SECONDS} s warm-up, ` +
        `${ROUNDS} interleaved rounds of ${RUNS_PER_ROUND} runs per scenario, each compared with the mean of the baseline ` +
        `runs just before and after it; medians of all ${ROUNDS * RUNS_PER_ROUND} runs; the bare stack in turns with the ` +
        `service, scenario by scenario, its ratios the medians of run-by-run ratios` +
        (reference ? `; the reference build likewise, on the users page only. ` : '. ') +
        (PIN ? `Service pinned to CPU ${SERVER_CPU}, load generator to CPU ${LOAD_CPU}.` : 'Nothing pinned.'),
    ].join('\n');
    process.stdout.write(table + '\n');
    const unmet = [...rows.filter((r) => !r.met).map((r) => r.scenario), ...(memory.met ? [] : ['memory'])];
    if (unmet.length > 0) {
      process.exitCode = 1;
      process.stderr.write(`Exit status 1: ${unmet.length} target(s) not met: ${unmet.join('; ')}.\n`);
    }
  } finally {
    try {
      if (server) await stopServer(server);
      if (floorServer) await stopServer(floorServer);
      await reference?.stop();
    } finally {
      await database.drop().finally(() => databaseServer.stop());
    }
  }
}

/** Another server's rows as a table under `title`, or nothing when it has none. */
function serverTable(title: string, rows: ReturnType<typeof summarize>[]): string[] {
  if (!rows.length) return [];
  return [
    title,
    '',
    '| request | req/s | p50 ms | p99 ms | ratio to its baseline | CPU us/req |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.requestsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.ratio} | ${r.serviceCpuUsPerRequest} |`,
    ),
    '',
  ];
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
