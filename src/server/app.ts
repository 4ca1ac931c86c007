import { type IncomingMessage, METHODS } from 'node:http';

import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { unwrapResolverError } from '@apollo/server/errors';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginLandingPageDisabled,
} from '@apollo/server/plugin/disabled';
import { fastifyApolloDrainPlugin } from '@as-integrations/fastify';
import cors from '@fastify/cors';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';

import { FILTERED_AUDIT_READ_COST, MAX_AUDIT_PAGE_SIZE } from '../audit/audit.service';
import { type AuthResult, presentedKind } from '../authentication/authenticate';
import { abilityFor } from '../authorization/abilities';
import type { Config } from '../config';
import { redactCredentials } from '../credential-shape';
import type { DatabaseOutage } from '../db/outage';
import { migrationsPending, type SecretCheck, SecretMismatchError } from '../db/runtime';
import { DomainError, isDatabaseUnavailable, PUBLIC_FRAMEWORK_CODES } from '../errors';
import { jitExecutionPlugin } from '../graphql/jit-execution';
import { operationChecksListener } from '../graphql/operation-checks';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../graphql/pagination';
import { queryLengthError, queryLimitsCheck } from '../graphql/query-limits';
import {
  checkNullVariables,
  checkOperationResolved,
  NoSubscriptionsRule,
  refusePersistedQueries,
} from '../graphql/request-shape';
import { selectionLimitsRule } from '../graphql/selection-limits';
import { checkTextInput } from '../graphql/text-input';
import { pathOnly, withRequestLoggers } from '../logger';
import { type GraphqlObservation, type Metrics, startMetricsServer } from '../metrics';
import {
  ambiguousContentTypeError,
  BodyError,
  registerJsonBodyParser,
  repeatedKeyInQueryString,
  unsupportedMediaTypeMessage,
} from '../request/body';
import { clientAddress } from '../request/client-address';
import type { Actor, RequestContext } from '../request/context';
import { createLoaders, type LoaderDeps, type Loaders } from '../request/loaders';
import { registerGithubSecretScanning } from '../secret-scanning/github';
import { apolloFastifyHandler, searchOf } from './apollo-handler';
import {
  clientErrorHandler,
  closeStalledResponses,
  limitConnections,
  maxConnections,
  METRICS_MAX_CONNECTIONS,
  NEVER_SHED,
  NO_STORE,
  noStoreOnSend,
  refuseConnect,
  refuseExpectations,
  registerHostCheck,
  registerLoadShedding,
  registerResponseHeaders,
  serverTimeouts,
  setResponseHeaders,
} from './http-hardening';
import { composeRequestListeners, listenerPlugin, type SyncableRequestListener } from './request-listeners';
import { registerRequestLog, requestIdGenerator } from './request-tracing';
import { buildAppSchema, resolverContainer } from './schema';
import type { Services } from './services';
import { registerAdminConsole } from './web/admin';
import { registerExplorerAssets, sendExplorer, wantsExplorer } from './web/explorer';
import { registerSite } from './web/site';

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor | null;
    /** Filled by Apollo for the request-duration metric; null until the request reaches Apollo. */
    graphqlObservation: GraphqlObservation | null;
  }
  interface FastifyInstance {
    /** Where this instance serves its Prometheus metrics once it is ready (METRICS_PORT), else null. */
    metricsUrl: string | null;
  }
}

export interface AppOptions {
  config: Config;
  services: Services;
  logger: Logger;
  /** More Apollo plugins (tests observe execution with them). */
  plugins?: ApolloServerPlugin<RequestContext>[];
  /**
   * The database's check of ACCESS_KEY_SECRET (openDatabase's `secretCheck`): until it is done, nothing that
   * uses keys is served. Absent: the secret was checked before the app was built (the tests' apps).
   */
  secretCheck?: Pick<SecretCheck, 'checked' | 'ensure'>;
}

const SECRET_CHECKED: Pick<SecretCheck, 'checked' | 'ensure'> = { checked: true, ensure: () => Promise.resolve(true) };

const GRAPHQL_PATH = '/graphql';
/** The methods /graphql answers, for Allow (OPTIONS and 405 answers); HEAD answers as GET does, without a body. */
const GRAPHQL_METHODS = 'GET, HEAD, POST, OPTIONS';
/** The methods /graphql offers (HEAD: Fastify's own route for the GET). */
const OFFERED_METHODS = new Set(['GET', 'HEAD', 'POST', 'OPTIONS']);
const WRONG_METHOD_MESSAGE = '/graphql answers GET (queries), HEAD and POST.';
const EXPLORER_OFF_MESSAGE =
  'This is the GraphQL API; its explorer page is turned off on this server. Send queries with POST ' +
  '(Content-Type: application/json), or with GET as ?query=... and an Apollo-Require-Preflight header.';
/** A GET or HEAD of /graphql with no query that is not a browser's (`curl http://…/graphql`): how to send one. */
const NO_QUERY_MESSAGE =
  'This is the GraphQL API: send a query with POST (Content-Type: application/json, {"query": "{ __typename }"}), ' +
  'or with GET as ?query=... and an Apollo-Require-Preflight header.';
const NO_QUERY_EXPLORER_HINT = ' Open /graphql in a browser for the explorer.';
const INTERNAL_MESSAGE = 'Internal server error. Quote the request id when reporting it.';
const UNAVAILABLE_MESSAGE = 'The service is temporarily unavailable; try again shortly.';
/** What a 503 asks clients to wait: the outage check runs about this often. */
const RETRY_AFTER_SECONDS = '1';
const MIGRATIONS_PENDING_MESSAGE = 'The database is not migrated yet; try again shortly.';

/**
 * For a route that uses keys, while the secret is not checked yet (SecretCheck): `serve` once it is; a 503
 * SERVICE_UNAVAILABLE with Retry-After while migrations are pending or once the secret was refused (the process
 * is stopping; SecretCheck logged why); a database that could not answer goes to `done` (the error handler's 503).
 * Never on the hot path: the caller reads `secretCheck.checked` first.
 */
function whenSecretChecked(params: {
  secretCheck: Pick<SecretCheck, 'ensure'>;
  reply: FastifyReply;
  done: (error?: Error) => void;
  serve: () => void;
}): void {
  const { reply, done } = params;
  const unavailable = (message: string) =>
    void reply
      .code(503)
      .header('retry-after', RETRY_AFTER_SECONDS)
      .type('application/json; charset=utf-8')
      .send({ errors: [{ message, extensions: { code: 'SERVICE_UNAVAILABLE', requestId: reply.request.id } }] });
  params.secretCheck.ensure().then(
    (checked) => (checked ? params.serve() : unavailable(MIGRATIONS_PENDING_MESSAGE)),
    (error: Error) => (error instanceof SecretMismatchError ? unavailable(UNAVAILABLE_MESSAGE) : done(error)),
  );
}

function isPublicError(error: unknown): boolean {
  if (error instanceof DomainError) return true;
  const code = error instanceof GraphQLError ? error.extensions?.code : undefined;
  // graphql-js reports syntax and validation errors without a code until Apollo tags them.
  return typeof code === 'string' && PUBLIC_FRAMEWORK_CODES.has(code);
}

/** graphql-js's suggestions (" Did you mean "search"?", "... the enum value "ADMIN"?"): names never hold "?". */
const SUGGESTION = / ?Did you mean [^?]*\?/g;
/**
 * Apollo's refusal of introspection names the framework and tells the caller how to configure the server
 * ("... pass introspection: true to ApolloServer in production"): clients get what it means, nothing more.
 */
const INTROSPECTION_REFUSED = /introspection is not allowed by Apollo Server/i;
const INTROSPECTION_OFF = 'Introspection (__schema, __type) is turned off on this server.';

/**
 * Only domain errors and the framework's own request errors keep their message; the rest is masked. With
 * `hideSuggestions` (the explorer is off, as in production) no message suggests a schema name: Apollo's
 * hideSchemaDetailsFromClientErrors cleans validation errors only, not variable coercion errors.
 * Every message that is kept has its credential-shaped runs replaced (redactCredentials): graphql-js quotes what
 * the client typed (a field, argument, fragment, variable, type or directive name, an operation name, an enum
 * value, a variable's value, an unexpected token) and so do our input errors (an email), and a key typed there
 * must not come back in an answer that caches, proxies and browser tools keep. Apollo formats every error it
 * answers with this (validation, coercion, parse, operation resolution, its own 400s, execution; graphql-jit's
 * too, see jitExecutionPlugin), and only errors: nothing is added to an answer without errors.
 */
export function errorFormatter(options: { hideSuggestions: boolean }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const result = formatError(formatted, error);
    if (INTROSPECTION_REFUSED.test(result.message)) return { ...result, message: INTROSPECTION_OFF };
    const shown = options.hideSuggestions ? result.message.replace(SUGGESTION, '') : result.message;
    const message = redactCredentials(shown);
    return message === result.message ? result : { ...result, message };
  };
}

function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  // graphql-js words it "Document contains more that N tokens" and calls it a syntax error; say what it is (the
  // whole document counts, every operation and fragment in it).
  const tooLarge = /contains more th(?:an|at) (\d+) tokens/.exec(formatted.message);
  if (formatted.extensions?.code === 'GRAPHQL_PARSE_FAILED' && tooLarge) {
    return {
      message: `The document is too large: more than ${tooLarge[1]} tokens.`,
      extensions: { code: 'QUERY_TOO_LARGE' },
    };
  }
  // graphql-js's parser recurses once per level of nesting (lists and objects in a value, selection sets): a
  // document nested deeper than its stack (about 2,000 levels, within the token limit) ends it with the engine's
  // "Maximum call stack size exceeded", which Apollo reports as a syntax error. Say what it is.
  if (formatted.extensions?.code === 'GRAPHQL_PARSE_FAILED' && /call stack size exceeded/i.test(formatted.message)) {
    return {
      message:
        'The operation nests too deeply to be read: its lists, objects or selection sets are inside each other ' +
        'thousands of levels deep. Nest them a few levels at most.',
      extensions: { code: 'QUERY_TOO_DEEP' },
    };
  }
  // A validation rule's refusal with a code of ours (selectionLimitsRule): Apollo reports it as a validation error,
  // under GRAPHQL_VALIDATION_FAILED; the client gets the limit's code.
  const original = error instanceof GraphQLError ? error.originalError : undefined;
  if (formatted.extensions?.code === 'GRAPHQL_VALIDATION_FAILED' && original instanceof DomainError) {
    const { stacktrace: _dropped, ...extensions } = formatted.extensions;
    return { message: formatted.message, extensions: { ...extensions, code: original.code } };
  }
  if (isPublicError(unwrapResolverError(error)) || isPublicError(error)) {
    const { stacktrace: _dropped, ...extensions } = formatted.extensions ?? {};
    return { ...formatted, extensions };
  }
  if (isDatabaseUnavailable(unwrapResolverError(error))) {
    return { message: UNAVAILABLE_MESSAGE, path: formatted.path, extensions: { code: 'SERVICE_UNAVAILABLE' } };
  }
  return { message: INTERNAL_MESSAGE, path: formatted.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
}

/** Per request, in its context: whether a resolver met a database that could not serve it. */
const DATABASE_UNAVAILABLE = Symbol('databaseUnavailable');
type ErrorStatusContext = RequestContext & { [DATABASE_UNAVAILABLE]?: true };

/** Statuses of refusals to do expensive work now (see errorStatusListener). */
const BUSY_STATUSES: Readonly<Record<string, number>> = { RATE_LIMITED: 429, SERVICE_UNAVAILABLE: 503 };

/**
 * What an error means for the answer's HTTP status and for the log, in one plugin (one concern):
 * - what was masked is logged with the request id that the client also receives; a database that cannot
 *   serve the request answers 503 with Retry-After and goes to the outage log (one line per outage);
 * - a refusal to do expensive work now is an HTTP status, like the refusals of authentication: RATE_LIMITED
 *   (the address's attempts, or its sign-ins under way) is 429, SERVICE_UNAVAILABLE (password hashing is at
 *   capacity) 503, each with Retry-After from the error's `retryAfterSeconds`;
 * - a `persistedQuery` extension is a 400, in words (refusePersistedQueries).
 * A request listener (see requestListenersPlugin) that keeps its state in the request's context: nothing is
 * allocated per request, and its hooks return at once.
 */
function errorStatusListener(outage: DatabaseOutage): SyncableRequestListener<RequestContext> {
  const listener: SyncableRequestListener<ErrorStatusContext> = {
    didEncounterErrors({ errors, contextValue }) {
      for (const error of errors) {
        const original = unwrapResolverError(error);
        if (isPublicError(original) || isPublicError(error)) continue;
        if (isDatabaseUnavailable(original)) {
          contextValue[DATABASE_UNAVAILABLE] = true;
          outage.report(original, contextValue.requestId);
        } else {
          contextValue.log.error({ err: original, path: error.path }, 'unexpected error in a resolver');
        }
      }
    },
    willSendResponse({ response, contextValue }) {
      refusePersistedQueries(response);
      if (contextValue[DATABASE_UNAVAILABLE]) {
        response.http.status = 503;
        response.http.headers.set('retry-after', RETRY_AFTER_SECONDS);
      }
      if (response.body.kind !== 'single') return;
      const errors = response.body.singleResult.errors;
      if (!errors) return;
      for (const error of errors) {
        const code = error.extensions?.code;
        if (code === 'INTERNAL_SERVER_ERROR' || code === 'SERVICE_UNAVAILABLE') {
          (error.extensions as Record<string, unknown>).requestId = contextValue.requestId;
        }
      }
      for (const error of errors) {
        const status = BUSY_STATUSES[String(error.extensions?.code)];
        if (!status) continue;
        response.http.status = status;
        response.http.headers.set('retry-after', String(error.extensions?.retryAfterSeconds ?? 1));
        return;
      }
    },
  };
  return listener as SyncableRequestListener<RequestContext>;
}

/** Fastify's 404 line names the URL with its query string, where clients put keys and passwords: the path only. */
function logRouteNotFound(request: FastifyRequest): void {
  request.log.info(`Route ${request.raw.method}:${pathOnly(request.raw.url)} not found`);
}

class PathOnlyLogController extends LogController {
  routeNotFound(request: FastifyRequest): void {
    if (!this.isLogDisabled(request)) logRouteNotFound(request);
  }
}

/**
 * A URL the router cannot take (a percent-escape that is not UTF-8, such as `%ff`), in the API's error shape:
 * Fastify's own answer repeated the whole URL, query string and any key in it included.
 */
function sendUnroutable(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const message =
    error.code === 'FST_ERR_BAD_URL'
      ? 'The path is not a valid URL: a percent-escape in it does not decode to UTF-8 text.'
      : 'The path could not be routed: check it.';
  setResponseHeaders(request, reply);
  void reply
    .code(400)
    .header('cache-control', NO_STORE)
    .send({ errors: [{ message, extensions: { code: 'BAD_REQUEST', requestId: request.id } }] });
}

/**
 * An unknown route (or method) answers in the API's error shape, naming the path only: Fastify's own 404 repeated
 * the whole URL, query string included, where a careless client puts its key, in an answer caches may keep.
 */
/**
 * What a POST body that is JSON but no operation object is, or null for an object with keys: a string, number,
 * boolean, null, an empty object or an array (a batch: not offered). Apollo answered the first ones and `{}` with
 * "POST body missing, invalid Content-Type, or JSON object has no keys" (their Content-Type was right), and an
 * array in its own words without the request id.
 */
function notAnOperation(body: unknown): string | null {
  if (Array.isArray(body)) return 'an array (one operation per request: batches are not taken)';
  if (typeof body === 'object' && body !== null) {
    for (const _key in body) return null;
    return 'an empty object';
  }
  return body === null ? 'null' : typeof body === 'boolean' ? 'a boolean' : `a ${typeof body}`;
}

/** The 400's words for a body notAnOperation names: what to send instead. */
function notAnObjectMessage(named: string): string {
  return `The body must be a JSON object with the operation in "query" ({"query": "{ me { id } }"}), not ${named}.`;
}

/** The query text a /graphql request carries (the body's `query`, or the query string's for GET), when it is a string. */
function queryTextOf(request: FastifyRequest): unknown {
  const source = request.method === 'POST' ? request.body : request.query;
  return typeof source === 'object' && source !== null && !Array.isArray(source)
    ? (source as { query?: unknown }).query
    : undefined;
}

/**
 * The path of a request target as Fastify routes it: up to the query string or fragment (Fastify 5 takes no ";"
 * delimiter), percent-decoded. Not pathOnly, which also cuts at ";" for the log and so made /graphql;x (or
 * /graphql%3Bx, /graphql%3F...) read as /graphql, a path no route here answers.
 */
function routedPath(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const end = url.search(/[?#]/);
  const path = end === -1 ? url : url.slice(0, end);
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function sendRouteNotFound(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // A method Node reads but Fastify routes none of (PROPFIND, SEARCH, PURGE, ...) on /graphql: the path exists.
  if (routedPath(request.raw.url) === GRAPHQL_PATH) {
    void reply.header('cache-control', NO_STORE);
    return refuse({ request, reply, status: 405, message: WRONG_METHOD_MESSAGE });
  }
  logRouteNotFound(request);
  const path = pathOnly(request.raw.url);
  // The path as logged is cut at ";" and decoded: naming it would say "No route POST /graphql" for /graphql;x.
  const message =
    path === GRAPHQL_PATH
      ? `No route ${request.raw.method} for this path: the API answers at ${GRAPHQL_PATH} exactly (no ";" parameters, no escaped ";" or "?").`
      : `No route ${request.raw.method} ${path}. The API answers at ${GRAPHQL_PATH}.`;
  return reply
    .code(404)
    .header('cache-control', NO_STORE)
    .send({ errors: [{ message, extensions: { code: 'NOT_FOUND' } }] });
}

/**
 * A /graphql refusal of the request's method or shape, in the shape the error handler gives Fastify's own refusals
 * (code BAD_REQUEST, the request id): a 405 (with Allow), a 415, a 400 for a browser while the explorer is off.
 */
function refuse(params: { request: FastifyRequest; reply: FastifyReply; status: 400 | 405 | 415; message: string }) {
  const { request, reply, status, message } = params;
  if (status === 405) void reply.header('allow', GRAPHQL_METHODS);
  return reply.code(status).send({ errors: [{ message, extensions: { code: 'BAD_REQUEST', requestId: request.id } }] });
}

function trustHops(hops: number): (address: string, hop: number) => boolean {
  return (_address, hop) => hop < hops;
}

/** Counts what authentication decided: a 429, a refused credential by kind, or a principal. */
function countAuthentication(metrics: Metrics, request: FastifyRequest, result: AuthResult): void {
  if (result.ok) {
    if (result.principal) metrics.countAuthentication(result.principal.kind, 'success');
  } else if (result.reason === 'RATE_LIMITED') {
    metrics.countRateLimited();
  } else {
    metrics.countAuthentication(presentedKind(request.raw) ?? 'UNKNOWN', result.reason);
  }
}

/** Serves the metrics on their own port from the moment the app is ready until it closes. */
function serveMetrics(app: FastifyInstance, params: { config: Config; metrics: Metrics; logger: Logger }): void {
  const { port, host } = params.config.metrics;
  app.decorate('metricsUrl', null);
  if (port === null) return;
  let close: (() => Promise<void>) | null = null;
  app.addHook('onReady', async () => {
    const server = await startMetricsServer({
      metrics: params.metrics,
      host,
      port,
      logger: params.logger,
      // A second server in this process: without limits of its own, idle sockets on the metrics port used up
      // the open files MAX_CONNECTIONS leaves over, and the process stopped (EMFILE) for every client.
      prepare: (metricsServer) => {
        metricsServer.headersTimeout = params.config.http.headersTimeoutMs;
        metricsServer.requestTimeout = params.config.http.requestTimeoutMs;
        limitConnections({
          server: metricsServer,
          maxConnections: METRICS_MAX_CONNECTIONS,
          metrics: params.metrics,
        });
        // As closeStalledResponses on the public port: a scrape nobody reads is closed. It reads no body, so
        // the timeout may start with the request.
        metricsServer.on('request', (request: IncomingMessage) =>
          request.socket.setTimeout(params.config.http.requestTimeoutMs),
        );
      },
    });
    close = server.close;
    app.metricsUrl = server.url;
  });
  app.addHook('onClose', async () => {
    await close?.();
  });
}

function sendAuthFailure(reply: FastifyReply, failure: Extract<AuthResult, { ok: false }>): FastifyReply {
  void reply.type('application/json; charset=utf-8');
  if (failure.reason === 'RATE_LIMITED') {
    const message = `Too many failed authentications from this address: try again in ${failure.retryAfterSeconds} s.`;
    return reply
      .code(429)
      .header('retry-after', String(failure.retryAfterSeconds))
      .send({
        errors: [{ message, extensions: { code: 'RATE_LIMITED', retryAfterSeconds: failure.retryAfterSeconds } }],
      });
  }
  return reply
    .code(401)
    .header('www-authenticate', 'Bearer')
    .send({ errors: [{ message: failure.message, extensions: { code: 'UNAUTHENTICATED', reason: failure.reason } }] });
}

/**
 * A GraphQL request's context. Apollo copies the context's own properties into a new object for each
 * operation, so it has few: the request and the services; what resolvers read are getters of the prototype,
 * and the loaders are made when a resolver first asks for them (`{ __typename }` and `me` never do).
 */
class GraphqlContext implements RequestContext {
  private madeLoaders: Loaders | null = null;

  constructor(
    private readonly request: FastifyRequest,
    private readonly services: LoaderDeps,
  ) {}

  get requestId(): string {
    return this.request.id;
  }

  get ip(): string {
    return clientAddress(this.request);
  }

  get actor(): Actor | null {
    return this.request.actor;
  }

  get log(): FastifyBaseLogger {
    return this.request.log;
  }

  get loaders(): Loaders {
    return (this.madeLoaders ??= createLoaders(this.services, this.request.actor));
  }
}

/**
 * Counts the GraphQL requests under way: each from the moment the route hands it to Apollo until Apollo's
 * handling of it has settled (its resolvers and database calls over, its answer sent or refused), whatever
 * happened to its client: one that hangs up does not stop its resolvers.
 */
class OperationsInFlight {
  private running = 0;
  private waiting: Array<() => void> = [];
  /** Bound once: no closure per request. */
  private readonly end = (): void => {
    this.running--;
    if (this.running === 0) for (const resolve of this.waiting.splice(0)) resolve();
  };

  /**
   * Counts `handling` until it settles, and returns it as it is: the count ends in a reaction of its own (which
   * also handles a rejection there; the caller gets the same promise, rejection included), not in a `finally`
   * promise that the caller would wait for in its place.
   */
  track<T>(handling: T | Promise<T>): T | Promise<T> {
    if (!(handling instanceof Promise)) return handling;
    this.running++;
    void handling.then(this.end, this.end);
    return handling;
  }

  /** Resolves once no request is under way (at once when none is). Never rejects. */
  settled(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

/** Builds the whole HTTP app; main.ts and the tests both start from here. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config, services, logger } = options;
  const { metrics } = services;
  const secretCheck = options.secretCheck ?? SECRET_CHECKED;
  const app = Fastify({
    // Each request's logger (request.log, with its id) is made on its first line: see withRequestLoggers.
    loggerInstance: withRequestLoggers(logger) as FastifyBaseLogger,
    genReqId: requestIdGenerator(config.trustProxy),
    requestIdHeader: false,
    // A hop count becomes proxy-addr's trust function: believe that many proxies, counted from this server.
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    // Fastify's own request lines are off: LOG_REQUESTS writes one line per request, without query strings.
    logController: new PathOnlyLogController({ disableRequestLogging: true }),
    ...serverTimeouts(config.http),
    clientErrorHandler,
    frameworkErrors: sendUnroutable,
  });
  limitConnections({ server: app.server, maxConnections: maxConnections(config), metrics });
  closeStalledResponses(app, config.http.requestTimeoutMs);
  serveMetrics(app, { config, metrics, logger });
  registerResponseHeaders(app);
  registerHostCheck(app);
  registerRequestLog(app, { enabled: config.logRequests });
  app.decorateRequest('actor', null);
  app.decorateRequest('graphqlObservation', null);
  // Fastify's own errors (bad JSON, wrong content type, body too large) in the shape of GraphQL errors.
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    // A client that hung up mid-body shows as ECONNRESET (status 400) from its own socket: its doing, not the
    // database's, so no outage and no error line. Fastify marks what it attributes to the client with a 4xx.
    // readableAborted: the body ended early (not `destroyed`, which a body read to its end also becomes).
    if (request.raw.readableAborted) {
      request.log.info(
        { code: (error as { code?: unknown }).code },
        'the client closed the connection before its request was read',
      );
      return reply.code(400).send();
    }
    const clientSide = error.statusCode !== undefined && error.statusCode < 500;
    if (!clientSide && isDatabaseUnavailable(error)) {
      services.outage.report(error, request.id);
      void reply.code(503).header('retry-after', RETRY_AFTER_SECONDS);
      return reply.send({
        errors: [{ message: UNAVAILABLE_MESSAGE, extensions: { code: 'SERVICE_UNAVAILABLE', requestId: request.id } }],
      });
    }
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'unexpected error');
    if (error instanceof BodyError) void reply.headers(error.headers);
    // A 4xx message may quote what the client sent (a content type, a charset): never a key or token back,
    // whoever reads the answer on its way.
    const message =
      status >= 500
        ? INTERNAL_MESSAGE
        : redactCredentials(
            (error as { code?: unknown }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
              ? unsupportedMediaTypeMessage(request)
              : error.message,
          );
    const code = status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST';
    return reply.code(status).send({ errors: [{ message, extensions: { code, requestId: request.id } }] });
  });
  registerJsonBodyParser(app);
  app.setNotFoundHandler(sendRouteNotFound);
  // Only the configured origins; none by default, so browsers elsewhere cannot call the API with a user's
  // session. With none, the plugin is not registered at all: with `origin: false` it adds no header and answers
  // no preflight, but its hook still ran (and allocated) on every request.
  if (config.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: [...config.corsOrigins],
      methods: ['GET', 'POST'],
      allowedHeaders: ['content-type', 'x-access-key', 'authorization', 'apollo-require-preflight'],
      exposedHeaders: ['x-request-id', 'retry-after'],
      maxAge: 600,
    });
  }

  const schema = await buildAppSchema(resolverContainer(services));
  const operations = new OperationsInFlight();
  // Closing waits for the GraphQL requests still running (a client that hung up does not stop its resolvers),
  // so that the database pool main.ts closes next is not pulled from under them.
  app.addHook('onClose', () => operations.settled());
  // Our own request hooks, each concern in its module, through one listener (Apollo's dispatch to each listener
  // at each stage costs allocation per request): refusals before execution, then what errors mean for the status
  // and the log, then the metrics' observation of the answer.
  const ownListener = composeRequestListeners<RequestContext>([
    operationChecksListener([
      checkOperationResolved,
      queryLimitsCheck(config.queryLimits, {
        users: { defaultFirst: DEFAULT_PAGE_SIZE, maxFirst: MAX_PAGE_SIZE },
        auditEvents: {
          defaultFirst: DEFAULT_PAGE_SIZE,
          maxFirst: MAX_AUDIT_PAGE_SIZE,
          filterCost: FILTERED_AUDIT_READ_COST,
        },
      }),
      checkTextInput,
      checkNullVariables,
    ]),
    errorStatusListener(services.outage),
    metrics.requestListener(),
  ]);
  const formatError = errorFormatter({ hideSuggestions: !config.explorerEnabled });
  const includeStacktraceInErrorResponses = false;
  const apollo = new ApolloServer<RequestContext>({
    schema,
    // Apollo's own lines (its warnings; "Unexpected error processing request" at error level) through ours: JSON,
    // redacted like every line; without it they go to the console as plain text.
    logger: logger.child({ component: 'apollo' }),
    formatError,
    includeStacktraceInErrorResponses,
    introspection: config.explorerEnabled,
    // In production no "Did you mean ...?" hints: they describe the schema to whoever probes it.
    hideSchemaDetailsFromClientErrors: !config.explorerEnabled,
    allowBatchedHttpRequests: false,
    // Not offered: see refusePersistedQueries (graphql/request-shape.ts) for why, and for the 400 a persistedQuery extension gets.
    persistedQueries: false,
    // selectionLimitsRule refuses, before the rest of validation, documents whose repeats would make it slow.
    validationRules: [selectionLimitsRule(config.queryLimits), NoSubscriptionsRule],
    parseOptions: { maxTokens: config.queryLimits.maxTokens },
    plugins: [
      fastifyApolloDrainPlugin(app),
      ApolloServerPluginLandingPageDisabled(),
      // No HTTP caching of an authenticated API; without this Apollo wraps every field resolver to compute hints.
      ApolloServerPluginCacheControlDisabled(),
      listenerPlugin(ownListener),
      // Tests' plugins observe execution: before the one that may answer in its place.
      ...(options.plugins ?? []),
      // Last: a query from its document's second use runs in graphql-jit (see there), with our hooks' and
      // Apollo's handling of its errors.
      jitExecutionPlugin<RequestContext>({
        schema,
        formatError,
        includeStacktraceInErrorResponses,
        didEncounterErrors: (context) => ownListener.didEncounterErrors?.(context),
      }),
    ],
  });
  await apollo.start();

  // `client` is clientAddress(request), read once per request by `authenticate` (request.ip is a getter of Fastify's).
  const admit = (
    request: FastifyRequest,
    reply: FastifyReply,
    client: string,
    result: AuthResult,
    done: () => void,
  ): void => {
    countAuthentication(metrics, request, result);
    if (!result.ok) {
      sendAuthFailure(reply, result);
      return;
    }
    if (result.principal) {
      request.actor = {
        principal: result.principal,
        ability: abilityFor(result.principal),
        requestId: request.id,
        ip: client,
      };
    }
    done();
  };
  // Callback style: a cached credential is admitted without a promise on the hot path. Keys are read only with a
  // checked secret (see SecretCheck): one property read once it is.
  const authenticate = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void => {
    if (!secretCheck.checked) {
      whenSecretChecked({ secretCheck, reply, done, serve: () => authenticate(request, reply, done) });
      return;
    }
    const client = clientAddress(request);
    const outcome = services.authenticator.authenticate(request.raw, client);
    if (outcome instanceof Promise) outcome.then((result) => admit(request, reply, client, result, done)).catch(done);
    else admit(request, reply, client, outcome, done);
  };

  // The context is returned at once, not in a promise: Apollo awaits it all the same (in a `try`, so a throw here
  // is answered as a rejection would be), and a promise per request buys nothing.
  const makeContext = (request: FastifyRequest): RequestContext => {
    const context = new GraphqlContext(request, services);
    request.graphqlObservation = metrics.track(context);
    return context;
  };
  const graphql = apolloFastifyHandler(apollo, makeContext);
  app.route({
    url: GRAPHQL_PATH,
    method: ['GET', 'POST', 'OPTIONS'],
    // The explorer's page is static and carries no credential: it loads even while the address is locked, so
    // that it can say so in words (its requests are authenticated as any other); so does, with the explorer off,
    // the 400 that says it is off.
    // OPTIONS asks what the endpoint allows, carries no operation, and so needs no credential: a 204 with Allow,
    // answered here, before any body it carries is parsed (it was refused as a body without Content-Type, 415).
    // Where origins are configured, @fastify/cors adds a preflight's headers first and leaves the answer to this
    // hook (preflightContinue), and an OPTIONS that is no preflight (no Origin or no method asked) is not its
    // plain-text 400 "Invalid Preflight Request" (strictPreflight off): the same 204 as without origins.
    config: { cors: { preflightContinue: true, strictPreflight: false } },
    // An ambiguous Content-Type is refused first, as the request's own shape, before any credential is looked up.
    onRequest: (request, reply, done) => {
      if (request.method === 'OPTIONS') return void reply.code(204).header('allow', GRAPHQL_METHODS).send();
      const ambiguous = ambiguousContentTypeError(request);
      if (ambiguous) done(ambiguous);
      else done();
    },
    // The credential is judged once the whole request is here, not at its headers: a client that held its body
    // back would otherwise choose when a request judged earlier runs, past a deactivation or a sign-out that
    // committed meanwhile (REQUEST_TIMEOUT_MS later at most).
    preHandler: (request, reply, done) => {
      if (wantsExplorer(request)) done();
      else authenticate(request, reply, done);
    },
    // Every answer here may carry a key or a token, whatever its status: no-store. And the answer's duration,
    // recorded as it is sent (onSend: a hook the response runs anyway; onResponse would add a hook run after it).
    onSend(request, reply, payload, done) {
      reply.header('cache-control', NO_STORE);
      metrics.observeGraphqlResponse({
        seconds: reply.elapsedTime / 1000,
        statusCode: reply.statusCode,
        observation: request.graphqlObservation,
      });
      done(null, payload);
    },
    // A browser opening /graphql gets the explorer where it is on, and a 400 saying how to send queries where it is
    // off (not Apollo's CSRF refusal, which is about requests from other sites); everything else is GraphQL over
    // HTTP. A POST without Content-Type (Fastify parses no body then) is the 415 of a body that is not JSON.
    handler(request, reply) {
      if (wantsExplorer(request)) {
        return config.explorerEnabled
          ? sendExplorer(reply)
          : refuse({ request, reply, status: 400, message: EXPLORER_OFF_MESSAGE });
      }
      // Nothing of an operation (no query, no extensions: a persisted query gets Apollo's own answer): how to send
      // one, not Apollo's CSRF text (set a Content-Type or a preflight header), which does not say what is missing.
      if (
        request.method !== 'POST' &&
        !queryTextOf(request) &&
        !(request.query as { extensions?: unknown } | undefined)?.extensions
      ) {
        const message = NO_QUERY_MESSAGE + (config.explorerEnabled ? NO_QUERY_EXPLORER_HINT : '');
        return refuse({ request, reply, status: 400, message });
      }
      if (request.method === 'POST' && request.headers['content-type'] === undefined) {
        return refuse({ request, reply, status: 415, message: unsupportedMediaTypeMessage(request) });
      }
      const { body } = request;
      const named = request.method === 'POST' && body !== undefined ? notAnOperation(body) : null;
      if (named) return refuse({ request, reply, status: 400, message: notAnObjectMessage(named) });
      const repeatedKey = request.method === 'POST' ? null : repeatedKeyInQueryString(searchOf(request.url));
      if (repeatedKey) return refuse({ request, reply, status: 400, message: repeatedKey });
      const tooLong = queryLengthError(queryTextOf(request), config.queryLimits);
      if (tooLong)
        return reply.code(400).send({ errors: [{ message: tooLong.message, extensions: { code: tooLong.code } }] });
      return operations.track(graphql(request, reply));
    },
  });
  // Other methods on /graphql are a client's mistake about the endpoint, not a missing route: every method Node's
  // parser takes (CONNECT aside: see refuseConnect). Fastify routes only the standard ones and QUERY; the others
  // (WebDAV's PROPFIND, MKCOL, LOCK, SEARCH, ...) went to the 404 of an unknown route. They are added as bodyless
  // methods: their bodies are never parsed, so the answer is the 405 whatever they carry.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method);
  }
  const refuseMethod = (request: FastifyRequest, reply: FastifyReply) =>
    refuse({ request, reply, status: 405, message: WRONG_METHOD_MESSAGE });
  app.route({
    url: GRAPHQL_PATH,
    method: app.supportedMethods.filter((method) => !OFFERED_METHODS.has(method)),
    // In a hook, not the handler: an answer sent before it (503 while shedding, 400 for a body that is not JSON) too.
    onSend: noStoreOnSend,
    // Before the body is read: whatever it holds (no Content-Type, text, broken JSON), the method is the mistake.
    onRequest: (request, reply, _done) => void refuseMethod(request, reply),
    handler: refuseMethod,
  });
  refuseConnect(app.server, { path: GRAPHQL_PATH, allow: GRAPHQL_METHODS, message: WRONG_METHOD_MESSAGE });
  refuseExpectations(app.server);
  if (config.explorerEnabled) registerExplorerAssets(app);
  registerAdminConsole(app);
  registerSite(app);
  registerGithubSecretScanning(app, {
    keysFile: config.secretScanning.githubKeysFile,
    services,
    onRequest: (_request, reply, done) =>
      secretCheck.checked ? done() : whenSecretChecked({ secretCheck, reply, done, serve: done }),
  });

  app.get('/healthz', { config: NEVER_SHED }, async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    try {
      // An unchecked secret's check reads the migrations itself (true: applied and the secret checked).
      const migrated = secretCheck.checked
        ? !(await migrationsPending(services.dataSource))
        : await secretCheck.ensure();
      if (!migrated) {
        return reply
          .code(503)
          .header('retry-after', RETRY_AFTER_SECONDS)
          .send({ status: 'unavailable', reason: 'database migrations are pending' });
      }
      return { status: 'ready' };
    } catch (error) {
      if (error instanceof SecretMismatchError) {
        return reply.code(503).send({ status: 'unavailable', reason: 'ACCESS_KEY_SECRET does not match the database' });
      }
      return reply
        .code(503)
        .header('retry-after', RETRY_AFTER_SECONDS)
        .send({ status: 'unavailable', reason: 'database unreachable' });
    }
  });
  // Last: sampling starts here, so building the schema above (seconds of synchronous work on a busy
  // machine) is not taken for an overloaded event loop. Its hook still runs before each route's own.
  await registerLoadShedding(app, { config, metrics });

  return app;
}
