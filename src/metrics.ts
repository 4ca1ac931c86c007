import http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import { listenFailure } from './listen-errors';
import type { SyncableRequestListener } from './server/request-listeners';

/**
 * Prometheus metrics of one service instance, in a registry of its own (tests run several instances in one
 * process). Label values come from short fixed lists only: never a key, token, email, user id, operation
 * name or anything else a client chooses, which would leak it and let clients grow the series without bound.
 */

export type OperationType = 'query' | 'mutation' | 'subscription' | 'none';
export type RequestOutcome = 'success' | 'graphql_error' | 'client_error' | 'server_error';
export type AuthenticationKind = 'ACCESS_KEY' | 'SESSION' | 'UNKNOWN';
export type AuthenticationResult = 'success' | 'MALFORMED_CREDENTIALS' | 'INVALID_CREDENTIALS';
/** Why a request was shed (see countLoadShed): each is a series of crm_access_load_shed_requests_total. */
export const LOAD_SHED_REASONS = ['event_loop_delay', 'heap_used'] as const;
export type LoadShedReason = (typeof LOAD_SHED_REASONS)[number];

/** What the Apollo plugin learns about one GraphQL request, read when its HTTP response has been sent. */
export interface GraphqlObservation {
  operation: OperationType;
  /** Null until Apollo answered; `graphql_error`/`server_error` when the answer carried errors. */
  outcome: Exclude<RequestOutcome, 'client_error'> | null;
}

/** Read at scrape time, so the hot path pays nothing for them. */
export interface MetricsSources {
  authCache: { readonly size: number; readonly hits: number; readonly misses: number };
  listenerConnected(): boolean;
  /** The connection pool's counters, or null before it exists. */
  pool(): { total: number; idle: number; waiting: number } | null;
}

const DURATION_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const OPERATION_TYPES: OperationType[] = ['query', 'mutation', 'subscription', 'none'];
const REQUEST_OUTCOMES: RequestOutcome[] = ['success', 'graphql_error', 'client_error', 'server_error'];
const AUTH_KINDS: AuthenticationKind[] = ['ACCESS_KEY', 'SESSION', 'UNKNOWN'];
const AUTH_RESULTS: AuthenticationResult[] = ['success', 'MALFORMED_CREDENTIALS', 'INVALID_CREDENTIALS'];
const SERVER_ERROR_CODES = new Set(['INTERNAL_SERVER_ERROR', 'SERVICE_UNAVAILABLE']);
/**
 * Where a request's observation rides on its GraphQL context. Apollo hands plugins a shallow copy of the
 * context, so it is a property (copied with the rest), under a symbol so it is no part of the context's type.
 */
const OBSERVATION = Symbol('graphqlObservation');
type Observed = { [OBSERVATION]?: GraphqlObservation };

/** A counter whose value lives elsewhere (a plain number on the hot path), copied in at scrape time. */
function mirroredCounter(params: { registry: Registry; name: string; help: string; read: () => number }): Counter {
  return new Counter({
    name: params.name,
    help: params.help,
    registers: [params.registry],
    collect() {
      this.reset();
      this.inc(params.read());
    },
  });
}

const DURATION_NAME = 'crm_access_graphql_request_duration_seconds';
const DURATION_HELP = 'Time from receiving a /graphql request to sending its response, by operation type and outcome.';

/** One value of the histogram's exposition, in prom-client's internal shape (see DurationHistogram). */
interface DurationValue {
  labels: { le?: number | string };
  sharedLabels: DurationSeries['labels'];
  value: number;
  metricName: string;
  exemplar: null | undefined;
}

/** One series of DurationHistogram: its observations per bucket (not cumulative), their sum and count. */
interface DurationSeries {
  readonly labels: { operation: OperationType; outcome: RequestOutcome };
  /** Per DURATION_BUCKETS_SECONDS entry, the observations above the previous bound and at most this one. */
  readonly inBucket: number[];
  sum: number;
  count: number;
}

/**
 * crm_access_graphql_request_duration_seconds{operation, outcome}: prom-client's histogram, counted in plain
 * numbers on the hot path (one per /graphql response) and handed to prom-client only when Prometheus scrapes.
 * A prom-client `observe`, even on a child bound to its labels, copies, validates and hashes the label set on
 * every call (about 1.5 us per request in the service's profile, docs/performance.md). The exposition is
 * prom-client's: `get` returns what Histogram's own does (cumulative `le` buckets, `+Inf`, `_sum`, `_count`,
 * only the series observed at least once): see getForPromString.
 */
class DurationHistogram extends Histogram<'operation' | 'outcome'> {
  private readonly series: Record<OperationType, Record<RequestOutcome, DurationSeries>>;

  constructor(registry: Registry) {
    super({
      name: DURATION_NAME,
      help: DURATION_HELP,
      labelNames: ['operation', 'outcome'],
      buckets: DURATION_BUCKETS_SECONDS,
      registers: [registry],
    });
    this.series = Object.fromEntries(
      OPERATION_TYPES.map((operation) => [
        operation,
        Object.fromEntries(
          REQUEST_OUTCOMES.map((outcome) => [
            outcome,
            { labels: { operation, outcome }, inBucket: DURATION_BUCKETS_SECONDS.map(() => 0), sum: 0, count: 0 },
          ]),
        ),
      ]),
    ) as Record<OperationType, Record<RequestOutcome, DurationSeries>>;
  }

  /**
   * One response's duration in seconds (finite, as a reply's elapsed time is). The only way in: Histogram's own
   * `observe` and `labels` would fill prom-client's map, which `get` does not read (this class is private to Metrics).
   */
  record(operation: OperationType, outcome: RequestOutcome, seconds: number): void {
    const series = this.series[operation][outcome];
    series.sum += seconds;
    series.count++;
    // As prom-client: the first bound at or above the value; above the last bound only +Inf (the count) counts it.
    for (let i = 0; i < DURATION_BUCKETS_SECONDS.length; i++) {
      if (seconds <= DURATION_BUCKETS_SECONDS[i]) {
        series.inBucket[i]++;
        return;
      }
    }
  }

  /**
   * What prom-client's Histogram builds from its own map, from these series: per series observed at least once,
   * its cumulative `le` buckets, `+Inf`, `_sum` and `_count`, with the series' labels as shared labels. The
   * registry formats it for Prometheus; Histogram's `get` (JSON) merges the shared labels into each value's.
   */
  async getForPromString(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    values: DurationValue[];
    aggregator: 'sum';
  }> {
    const bucketName = `${DURATION_NAME}_bucket`;
    const values: DurationValue[] = [];
    for (const operation of OPERATION_TYPES) {
      for (const outcome of REQUEST_OUTCOMES) {
        const series = this.series[operation][outcome];
        if (series.count === 0) continue;
        const sharedLabels = series.labels;
        let cumulative = 0;
        DURATION_BUCKETS_SECONDS.forEach((bound, i) => {
          cumulative += series.inBucket[i];
          values.push({
            labels: { le: bound },
            sharedLabels,
            value: cumulative,
            metricName: bucketName,
            exemplar: null,
          });
        });
        values.push(
          { labels: { le: '+Inf' }, sharedLabels, value: series.count, metricName: bucketName, exemplar: null },
          { labels: {}, sharedLabels, value: series.sum, metricName: `${DURATION_NAME}_sum`, exemplar: undefined },
          { labels: {}, sharedLabels, value: series.count, metricName: `${DURATION_NAME}_count`, exemplar: undefined },
        );
      }
    }
    return { name: DURATION_NAME, help: DURATION_HELP, type: 'histogram', values, aggregator: 'sum' };
  }

  /** Zeroes every series (prom-client's `registry.resetMetrics()`), and prom-client's own map with them. */
  override reset(): void {
    super.reset();
    // prom-client's constructor resets too, before this class has its series.
    if ((this.series as typeof this.series | undefined) === undefined) return;
    for (const operation of OPERATION_TYPES) {
      for (const series of Object.values(this.series[operation])) {
        series.inBucket.fill(0);
        series.sum = 0;
        series.count = 0;
      }
    }
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requestDuration = new DurationHistogram(this.registry);
  /**
   * Authentications by kind and result: plain numbers on the hot path (every authenticated request counts
   * one), copied into the counter when Prometheus scrapes. prom-client's labelled `inc` hashes the label set
   * on every call.
   */
  private readonly authenticationCounts = Object.fromEntries(
    AUTH_KINDS.map((kind) => [kind, Object.fromEntries(AUTH_RESULTS.map((result) => [result, 0]))]),
  ) as Record<AuthenticationKind, Record<AuthenticationResult, number>>;
  private readonly authentications = new Counter<'kind' | 'result'>({
    name: 'crm_access_authentications_total',
    help: 'Requests that presented a credential, by credential kind and result (UNKNOWN: headers too malformed to tell).',
    labelNames: ['kind', 'result'],
    registers: [this.registry],
    collect: () => {
      this.authentications.reset();
      for (const kind of AUTH_KINDS) {
        for (const result of AUTH_RESULTS) {
          this.authentications.inc({ kind, result }, this.authenticationCounts[kind][result]);
        }
      }
    },
  });
  private readonly rateLimited = new Counter({
    name: 'crm_access_rate_limited_requests_total',
    help: 'Requests refused with 429 because their client address made too many failed authentications.',
    registers: [this.registry],
  });
  private readonly keyReveals = new Counter({
    name: 'crm_access_key_reveals_total',
    help: 'Access keys revealed by reading User.accessKey (one per user per request, each an ACCESS_KEY_VIEWED audit event).',
    registers: [this.registry],
  });
  private readonly keyRegenerations = new Counter({
    name: 'crm_access_key_regenerations_total',
    help: 'Committed regenerateAccessKey mutations.',
    registers: [this.registry],
  });
  private readonly loadShed = new Counter<'reason'>({
    name: 'crm_access_load_shed_requests_total',
    help: 'Requests answered 503 because the instance was overloaded, by the limit that was exceeded.',
    labelNames: ['reason'],
    registers: [this.registry],
    // Every reason's series from the first scrape, at 0: an alert on its rate has a series before the first shed.
    collect() {
      for (const reason of LOAD_SHED_REASONS) this.inc({ reason }, 0);
    },
  });
  private readonly idleConnectionsClosed = new Counter({
    name: 'crm_access_idle_connections_closed_total',
    help: 'Idle client connections closed to make room for new ones at the connection limit.',
    registers: [this.registry],
  });
  private readonly unhandledRejections = new Counter({
    name: 'crm_access_unhandled_rejections_total',
    help: 'Promise rejections that no code handled, each logged at error level (a server bug; the instance keeps serving).',
    registers: [this.registry],
  });
  private defaultMetricsOn = false;

  /** Registers the gauges and counters that are read from their owners when Prometheus scrapes. */
  watch(sources: MetricsSources): void {
    const registry = this.registry;
    mirroredCounter({
      registry,
      name: 'crm_access_auth_cache_hits_total',
      help: 'Credential lookups answered by the auth cache.',
      read: () => sources.authCache.hits,
    });
    mirroredCounter({
      registry,
      name: 'crm_access_auth_cache_misses_total',
      help: 'Credential lookups the auth cache could not answer.',
      read: () => sources.authCache.misses,
    });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    gauge('crm_access_auth_cache_entries', 'Credentials in the auth cache.', () => sources.authCache.size);
    gauge(
      'crm_access_notification_listener_connected',
      '1 while the LISTEN connection that carries revocations is up (the auth cache is off while it is 0).',
      () => (sources.listenerConnected() ? 1 : 0),
    );
    gauge('crm_access_db_pool_connections', 'Open connections in the database pool.', () => sources.pool()?.total ?? 0);
    gauge(
      'crm_access_db_pool_idle_connections',
      'Idle connections in the database pool.',
      () => sources.pool()?.idle ?? 0,
    );
    gauge(
      'crm_access_db_pool_waiting_requests',
      'Queries waiting for a connection from the pool.',
      () => sources.pool()?.waiting ?? 0,
    );
  }

  /** Node's process metrics (CPU, memory, event loop lag, GC): collected only where they are served. */
  collectDefaultMetrics(): void {
    if (this.defaultMetricsOn) return;
    this.defaultMetricsOn = true;
    collectDefaultMetrics({ register: this.registry });
  }

  /** One authentication decision: crm_access_authentications_total{kind, result}. */
  countAuthentication(kind: AuthenticationKind, result: AuthenticationResult): void {
    this.authenticationCounts[kind][result]++;
  }

  /** One request refused for too many failed authentications (429): crm_access_rate_limited_requests_total. */
  countRateLimited(): void {
    this.rateLimited.inc();
  }

  /** `count` keys revealed (their views committed): crm_access_key_reveals_total. */
  countKeyReveals(count: number): void {
    this.keyReveals.inc(count);
  }

  /** One key regenerated: crm_access_key_regenerations_total. */
  countKeyRegeneration(): void {
    this.keyRegenerations.inc();
  }

  /** One request refused to shed load, by reason: crm_access_load_shed_requests_total{reason}. */
  countLoadShed(reason: LoadShedReason): void {
    this.loadShed.inc({ reason });
  }

  /** The longest-idle connection closed to admit a new one over the limit: crm_access_idle_connections_closed_total. */
  countIdleConnectionClosed(): void {
    this.idleConnectionsClosed.inc();
  }

  /** One promise rejection that nothing handled (see src/unhandled-rejections.ts): crm_access_unhandled_rejections_total. */
  countUnhandledRejection(): void {
    this.unhandledRejections.inc();
  }

  /** A fresh observation for one GraphQL request, attached to its context for the Apollo plugin to fill. */
  track(context: object): GraphqlObservation {
    const observation: GraphqlObservation = { operation: 'none', outcome: null };
    (context as Observed)[OBSERVATION] = observation;
    return observation;
  }

  /**
   * Notes each request's operation type and whether its answer carried errors (masked ones as server errors):
   * an Apollo request listener, one for every request (the observation lives in the request's context), whose
   * hook returns at once.
   */
  requestListener(): SyncableRequestListener<object> {
    return {
      willSendResponse({ operation, response, contextValue }) {
        const observation = (contextValue as Observed)[OBSERVATION];
        if (!observation) return;
        if (operation) observation.operation = operation.operation;
        const errors = response.body.kind === 'single' ? response.body.singleResult.errors : undefined;
        if (!errors?.length) observation.outcome = 'success';
        else
          observation.outcome = errors.some((error) => SERVER_ERROR_CODES.has(String(error.extensions?.code)))
            ? 'server_error'
            : 'graphql_error';
      },
    };
  }

  /**
   * Records one /graphql response. `observation` is null when the request never reached Apollo: refused
   * credentials, a body that is not JSON, or not a GraphQL request at all (the explorer page, a CORS
   * preflight), which is left out.
   */
  observeGraphqlResponse(params: {
    seconds: number;
    statusCode: number;
    observation: GraphqlObservation | null;
  }): void {
    const { seconds, statusCode, observation } = params;
    if (!observation && statusCode < 400) return;
    let outcome: RequestOutcome = observation?.outcome ?? 'success';
    if (statusCode >= 500) outcome = 'server_error';
    else if (statusCode >= 400) outcome = 'client_error';
    this.requestDuration.record(observation?.operation ?? 'none', outcome, seconds);
  }
}

export interface MetricsServer {
  /** `http://host:port/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` in Prometheus' text format on its own port (never the public one: the config
 * refuses that), and nothing else. Resolves once listening; rejects when the port cannot be bound.
 */
export async function startMetricsServer(params: {
  metrics: Metrics;
  host: string;
  port: number;
  logger: Logger;
  /** Called with the server before it listens: its connection limit and timeouts (src/server/app.ts). */
  prepare?: (server: http.Server) => void;
}): Promise<MetricsServer> {
  const { metrics, logger } = params;
  metrics.collectDefaultMetrics();
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    // HEAD is GET without the content (RFC 9110 9.3.2): Node's response sends no body for it.
    if ((request.method !== 'GET' && request.method !== 'HEAD') || path !== '/metrics') {
      response
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end('Not found: metrics are at GET /metrics.\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) =>
        response
          .writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' })
          .end(text),
      (error: unknown) => {
        logger.error({ err: error }, 'could not collect metrics');
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Could not collect metrics.\n');
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  params.prepare?.(server);
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) =>
      reject(listenFailure(error, { host: params.host, port: params.port, settings: 'METRICS_HOST and METRICS_PORT' }));
    server.once('error', failed);
    server.listen(params.port, params.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
