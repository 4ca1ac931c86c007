import 'reflect-metadata';

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';

import type { DataSource } from 'typeorm';

import { KeyCrypto } from '../src/access-keys/key-crypto';
import { loadConfig } from '../src/config';
import { createDataSource } from '../src/db/data-source';
import { checkSecret } from '../src/db/runtime';
import { createLogger } from '../src/logger';
import { createServices, type Services } from '../src/server/services';
import {
  benchDatabaseServer,
  freePort,
  freshDatabase,
  percentile,
  startServiceProcess,
  stopServer,
} from './server-process';

/**
 * `npm run bench:scale`: do the reads that grow with the data stay flat? Seeds organizations of 1k, 10k and
 * 100k users and organizations with 100k and 2M audit events (generate_series, in SQL), starts the service in
 * its own process in production mode, and times each listed query through HTTP, one request at a time
 * (latency, not throughput), the sizes of a query taking turns. Prints p50/p99 per query and size and the
 * growth of p50 from the smallest size to the largest; exits 1 when a p50 grows more than MAX_GROWTH times or
 * exceeds MAX_P50_MS at the largest size (issue 17, Done-when 3).
 *
 * DATABASE_URL: a server to seed a fresh database on (dropped afterwards); without it, an embedded PostgreSQL
 * in a temporary folder. BENCH_SCALE_REQUESTS: timed requests per query and size (default 200).
 */
const USER_SIZES = [1_000, 10_000, 100_000];
const AUDIT_SIZES = [100_000, 2_000_000];
const WARM_UP_REQUESTS = 30;
/** Turns the sizes take (see timeSizes); REQUESTS is rounded to a multiple of it. */
const ROUNDS = 10;
const REQUESTS = Math.max(1, Math.round(Number(process.env.BENCH_SCALE_REQUESTS ?? 200) / ROUNDS)) * ROUNDS;
const MAX_GROWTH = 3;
const MAX_P50_MS = 25;
/** Users of each audit organization: actors and targets of its events. */
const AUDIT_ORG_USERS = 100;
/** One event in this many is the rare action, by the rare actor, or on the rare target. */
const RARE_EVERY = 10_000;

const GIVEN = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken', 'Frances', 'John'];
const FAMILY = [
  'Lovelace',
  'Hopper',
  'Turing',
  'Dijkstra',
  'Liskov',
  'Knuth',
  'Hamilton',
  'Thompson',
  'Allen',
  'Backus',
  'Ritchie',
  'Wirth',
];

interface Org {
  id: string;
  key: string;
  tag: string;
}

/** An organization named after `label` and its admin, whose access key the queries are sent with. */
async function createOrg(services: Services, label: string): Promise<Org> {
  const tag = `${label}-${randomBytes(3).toString('hex')}`;
  const created = await services.organizations.createWithAdmin({
    name: `Scale ${tag}`,
    adminEmail: `admin@${tag}.example`,
    adminName: 'Aaron Admin',
  });
  return { id: created.organizationId, key: created.adminAccessKey, tag };
}

/**
 * `count` more users in `org` (so it holds count + 1 with its admin): user i is "<Given> <Family> <6 hex of
 * md5(i)>" with email "<given>.<family>.<i>@<tag>.example".
 */
async function seedUsers(params: { dataSource: DataSource; org: Org; count: number }): Promise<void> {
  const { dataSource, org, count } = params;
  await dataSource.query(
    `INSERT INTO users (organization_id, email, name, role)
     SELECT $1, lower(g || '.' || f || '.' || i || '@' || $3 || '.example'), g || ' ' || f || ' ' || substr(md5(i::text), 1, 6),
            CASE WHEN i % 50 = 0 THEN 'MANAGER' ELSE 'MEMBER' END
       FROM generate_series(1, $2::int) AS i,
            LATERAL (SELECT ($4::text[])[1 + i % ${GIVEN.length}] AS g, ($5::text[])[1 + (i / ${GIVEN.length}) % ${FAMILY.length}] AS f) AS n`,
    [org.id, count, org.tag, GIVEN, FAMILY],
  );
}

/**
 * `count` events in `org`, oldest first, spread over the last 300 days (inside the default retention), by
 * and on its common users; one in RARE_EVERY is PASSWORD_CHANGED, one is by the rare actor, one on the rare target.
 */
async function seedAudit(params: {
  dataSource: DataSource;
  org: Org;
  count: number;
}): Promise<{ rareActor: string; rareTarget: string }> {
  const { dataSource, org, count } = params;
  await seedUsers({ dataSource, org, count: AUDIT_ORG_USERS });
  const ids: string[] = (
    await dataSource.query(`SELECT id FROM users WHERE organization_id = $1 ORDER BY id`, [org.id])
  ).map((row: { id: string }) => row.id);
  const [rareActor, rareTarget, ...common] = ids;
  await dataSource.query(
    `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, target_user_id, ip, created_at)
     SELECT $1,
            CASE WHEN i % ${RARE_EVERY} = 0 THEN 'PASSWORD_CHANGED'
                 ELSE (ARRAY['ACCESS_KEY_VIEWED', 'LOGIN_SUCCEEDED', 'USER_UPDATED', 'ACCESS_KEY_REGENERATED'])[1 + i % 4] END,
            CASE WHEN i % ${RARE_EVERY} = 1 THEN $3::uuid ELSE ($5::uuid[])[1 + i % cardinality($5::uuid[])] END,
            'ACCESS_KEY',
            CASE WHEN i % ${RARE_EVERY} = 2 THEN $4::uuid ELSE ($5::uuid[])[1 + (i * 7) % cardinality($5::uuid[])] END,
            '10.0.0.1',
            now() - interval '300 days' * (($2::int - i)::float8 / $2::int)
       FROM generate_series(1, $2::int) AS i`,
    [org.id, count, rareActor, rareTarget, common],
  );
  return { rareActor, rareTarget };
}

interface Query {
  name: string;
  query: string;
  /** The first field's connection must hold this many edges (a wrong seed or query must not pass as fast). */
  minEdges: number;
}

interface Sized {
  size: number;
  org: Org;
  queries: Query[];
}

const USER_FIELDS = 'edges { node { id name email } } pageInfo { endCursor hasNextPage }';
const AUDIT_FIELDS = 'edges { node { id action createdAt ip } } pageInfo { endCursor hasNextPage }';

/** The users list's cursor (src/users/user.service.ts encodeCursor): base64url of JSON [name, id]. */
const userCursor = (name: string, id: string) => Buffer.from(JSON.stringify([name, id])).toString('base64url');

/** The users queries for an organization of `size` users (seeded by seedUsers). */
async function userQueries(params: { dataSource: DataSource; org: Org; size: number }): Promise<Query[]> {
  const { dataSource, org, size } = params;
  const middle = Math.floor(size / 2);
  const [named] = await dataSource.query(`SELECT substr(md5($1::text), 2, 5) AS part`, [middle]);
  const [deep] = await dataSource.query(
    `SELECT name, id FROM users WHERE organization_id = $1 ORDER BY name, id OFFSET $2 LIMIT 1`,
    [org.id, Math.floor(size * 0.9)],
  );
  return [
    { name: 'users first page (50)', query: `{ users(first: 50) { ${USER_FIELDS} } }`, minEdges: 50 },
    {
      name: 'users page deep in the cursor (90%)',
      query: `{ users(first: 50, after: "${userCursor(deep.name, deep.id)}") { ${USER_FIELDS} } }`,
      minEdges: 50,
    },
    {
      name: 'users search, part of a name',
      query: `{ users(first: 50, filter: { search: "${named.part}" }) { ${USER_FIELDS} } }`,
      minEdges: 1,
    },
    {
      name: 'users search, part of an email',
      query: `{ users(first: 50, filter: { search: ".${middle}@" }) { ${USER_FIELDS} } }`,
      minEdges: 1,
    },
    { name: 'users totalCount', query: `{ users(first: 0) { totalCount } }`, minEdges: 0 },
  ];
}

/** The audit queries; the filtered ones look for the seeded rare action, actor and target. */
function auditQueries(rare: { rareActor: string; rareTarget: string }): Query[] {
  return [
    { name: 'auditEvents first page (50)', query: `{ auditEvents(first: 50) { ${AUDIT_FIELDS} } }`, minEdges: 50 },
    {
      name: 'auditEvents by action',
      query: `{ auditEvents(first: 50, filter: { action: PASSWORD_CHANGED }) { ${AUDIT_FIELDS} } }`,
      minEdges: 10,
    },
    {
      name: 'auditEvents by actor',
      query: `{ auditEvents(first: 50, filter: { actorId: "${rare.rareActor}" }) { ${AUDIT_FIELDS} } }`,
      minEdges: 10,
    },
    {
      name: 'auditEvents by target user',
      query: `{ auditEvents(first: 50, filter: { targetUserId: "${rare.rareTarget}" }) { ${AUDIT_FIELDS} } }`,
      minEdges: 10,
    },
  ];
}

/** One GraphQL POST as `key`'s user; throws unless it answers 200 without errors. */
async function post(request: { url: string; key: string; query: string }): Promise<any> {
  const { url, key, query } = request;
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-access-key': key },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as { data?: Record<string, any>; errors?: unknown };
  if (response.status !== 200 || body.errors)
    throw new Error(`${query}: ${response.status} ${JSON.stringify(body.errors)}`);
  return body.data;
}

/** Checks that `query` answers as seeded (a wrong seed or query must not pass as fast), then warms it up. */
async function prepare(params: { url: string; key: string; query: Query }): Promise<void> {
  const { url, key, query } = params;
  const data = await post({ url, key, query: query.query });
  const connection = Object.values(data)[0] as { edges?: unknown[] };
  if ((connection.edges?.length ?? 0) < query.minEdges) {
    throw new Error(`${query.name}: ${connection.edges?.length} edges, expected at least ${query.minEdges}`);
  }
  for (let i = 0; i < WARM_UP_REQUESTS; i++) await post({ url, key, query: query.query });
}

/**
 * p50/p99 of one query at every size. The sizes take turns, ROUNDS rounds of REQUESTS / ROUNDS requests each
 * (the order rotating), so a change in the machine's load during the run falls on every size alike: this
 * machine's speed drifts by several times over a minute when other work runs on it.
 */
async function timeSizes(params: {
  url: string;
  sets: readonly Sized[];
  q: number;
}): Promise<Array<{ p50: number; p99: number }>> {
  const { url, sets, q } = params;
  for (const set of sets) await prepare({ url, key: set.org.key, query: set.queries[q] });
  const samples: number[][] = sets.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (let turn = 0; turn < sets.length; turn++) {
      const i = (round + turn) % sets.length;
      for (let n = 0; n < REQUESTS / ROUNDS; n++) {
        const startedAt = performance.now();
        await post({ url, key: sets[i].org.key, query: sets[i].queries[q].query });
        samples[i].push(performance.now() - startedAt);
      }
    }
  }
  return samples.map((times) => {
    times.sort((a, b) => a - b);
    return { p50: percentile(times, 50), p99: percentile(times, 99) };
  });
}

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const secret = randomBytes(32);
  const databaseServer = await benchDatabaseServer('crm-access-bench-scale');
  const { embedded } = databaseServer;
  const database = await freshDatabase({ serverUrl: databaseServer.url, prefix: 'crm_access_scale' });
  let server: ChildProcess | null = null;
  try {
    const config = loadConfig({ NODE_ENV: 'production', ACCESS_KEY_SECRET: secret.toString('base64') });
    const dataSource = createDataSource({
      url: database.url,
      db: { ...config.db, statementTimeoutMs: 0, idleInTransactionTimeoutMs: 0 },
    });
    await dataSource.initialize();
    await dataSource.runMigrations();
    const keyCrypto = new KeyCrypto(secret);
    await checkSecret(dataSource, keyCrypto);
    const services = createServices({
      dataSource,
      databaseUrl: database.url,
      keyCrypto,
      logger: createLogger({ level: 'warn' }),
      config,
    });

    const userSets: Sized[] = [];
    for (const size of USER_SIZES) {
      log(`seeding an organization of ${size} users...`);
      const org = await createOrg(services, `users${size}`);
      await seedUsers({ dataSource, org, count: size - 1 });
      userSets.push({ size, org, queries: [] });
    }
    const auditSets: Sized[] = [];
    for (const size of AUDIT_SIZES) {
      log(`seeding an organization of ${size} audit events...`);
      const org = await createOrg(services, `audit${size}`);
      const rare = await seedAudit({ dataSource, org, count: size });
      auditSets.push({ size, org, queries: auditQueries(rare) });
    }
    log('VACUUM ANALYZE...');
    await dataSource.query('VACUUM ANALYZE users');
    await dataSource.query('VACUUM ANALYZE audit_events');
    for (const set of userSets) set.queries = await userQueries({ dataSource, org: set.org, size: set.size });
    await dataSource.destroy();

    const port = await freePort();
    server = await startServiceProcess({ url: database.url, secret, port });
    const url = `http://127.0.0.1:${port}/graphql`;

    const rows: string[] = [];
    let met = true;
    for (const [label, sets] of [
      ['users', userSets],
      ['audit events', auditSets],
    ] as const) {
      for (let q = 0; q < sets[0].queries.length; q++) {
        log(`${sets[0].queries[q].name} at ${sets.map((set) => set.size).join(', ')} ${label}...`);
        const results = await timeSizes({ url, sets, q });
        const growth = results.at(-1)!.p50 / results[0].p50;
        const largest = results.at(-1)!.p50;
        const ok = growth <= MAX_GROWTH && largest <= MAX_P50_MS;
        met &&= ok;
        const cells = results.map(
          (r, i) => `${sets[i].size.toLocaleString('en')}: ${r.p50.toFixed(2)} / ${r.p99.toFixed(2)}`,
        );
        if (cells.length === 2) cells.splice(1, 0, '-');
        rows.push(
          `| ${sets[0].queries[q].name} | ${cells.join(' | ')} | ${growth.toFixed(2)}x | ${ok ? 'yes' : 'NO'} |`,
        );
      }
    }
    const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${embedded ? 'embedded PostgreSQL' : 'DATABASE_URL server'}, load ${os
      .loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')}`;
    process.stdout.write(
      [
        `p50 / p99 in ms per size (${REQUESTS} sequential requests each after ${WARM_UP_REQUESTS} warm-up, the sizes taking turns ` +
          `in ${ROUNDS} rounds; production mode, through HTTP).`,
        `Target: p50 grows at most ${MAX_GROWTH}x from the smallest size to the largest and stays under ${MAX_P50_MS} ms at the largest.`,
        '',
        '| query | smallest | middle | largest | p50 growth | met |',
        '|---|---|---|---|---:|---|',
        ...rows,
        '',
        `Machine: ${machine}.`,
      ].join('\n') + '\n',
    );
    if (!met) {
      process.exitCode = 1;
      process.stderr.write('Exit status 1: a query above is not met (its met column says NO).\n');
    }
  } finally {
    if (server) await stopServer(server);
    // Kept for a look at the plans (EXPLAIN) when asked, on a DATABASE_URL server; an embedded one goes.
    if (process.env.BENCH_SCALE_KEEP_DATABASE === 'true' && !embedded) log(`kept ${database.url}`);
    else await database.drop();
    await databaseServer.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
