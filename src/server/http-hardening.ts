import fs from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import v8 from 'node:v8';

import underPressure from '@fastify/under-pressure';
import type {
  DoneFuncWithErrOrRes,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';

import type { Config } from '../config';
import { isHeaderName } from '../header-name';
import type { Metrics } from '../metrics';

/**
 * What protects the HTTP server from slow, idle and overwhelming clients: Node's timeouts, a connection
 * limit that closes idle connections first, load shedding, and the security headers every response carries.
 */

/** How long a client is told to wait when the instance is overloaded. */
const OVERLOAD_RETRY_AFTER_SECONDS = 5;
/** File descriptors kept for everything that is not a client connection (logs, the listener, files, slack). */
const RESERVED_FILE_DESCRIPTORS = 64;
/** Assumed where the open-file limit cannot be read (no /proc). */
const FALLBACK_OPEN_FILE_LIMIT = 1024;
const HEAP_SHARE = 0.9;

/**
 * Fastify's server options for the timeouts. Node checks the headers and request timeouts on a timer
 * (every 30 s by default, which would let a slow client keep its socket for that much longer): here at least
 * every second, and more often for timeouts shorter than two seconds. Node's own check for an HTTP/1.1 request
 * without Host is off (`requireHostHeader`): it answered a bare 400, no body and no security headers, where
 * registerHostCheck answers in the API's error shape.
 */
export function serverTimeouts(http: Config['http']): Pick<
  FastifyServerOptions,
  'requestTimeout' | 'keepAliveTimeout'
> & {
  http: {
    headersTimeout: number;
    requestTimeout: number;
    connectionsCheckingInterval: number;
    requireHostHeader: boolean;
  };
} {
  return {
    requestTimeout: http.requestTimeoutMs,
    keepAliveTimeout: http.keepAliveTimeoutMs,
    http: {
      headersTimeout: http.headersTimeoutMs,
      requestTimeout: http.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(http.headersTimeoutMs / 2))),
      requireHostHeader: false,
    },
  };
}

/** The soft limit on open files (`ulimit -n`) from /proc on Linux; null where it cannot be read. */
function openFileLimit(): number | null {
  try {
    const line = /^Max open files\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (line === 'unlimited') return Number.MAX_SAFE_INTEGER;
    const limit = Number(line);
    return Number.isInteger(limit) && limit > 0 ? limit : null;
  } catch {
    return null;
  }
}

/**
 * Open connections on the metrics port at most (Prometheus scrapes over one or two); past it, as on the
 * public port, the longest-idle one is closed. Its file descriptors are kept out of the public port's share.
 */
export const METRICS_MAX_CONNECTIONS = 16;

/**
 * MAX_CONNECTIONS, or what the open-file limit leaves once the database pool, the metrics port (when served)
 * and the process have theirs.
 */
export function maxConnections(config: Pick<Config, 'http' | 'db' | 'metrics'>): number {
  if (config.http.maxConnections !== null) return config.http.maxConnections;
  const limit = openFileLimit() ?? FALLBACK_OPEN_FILE_LIMIT;
  const metricsShare = config.metrics.port === null ? 0 : METRICS_MAX_CONNECTIONS;
  return Math.max(16, limit - RESERVED_FILE_DESCRIPTORS - config.db.poolSize - metricsShare);
}

/**
 * Keeps open client connections at `maxConnections` at most, so a flood of sockets cannot exhaust the
 * process's file descriptors (past which Node accepts and drops every new connection, real ones included).
 * A connection over the limit makes room by closing the connection that has been idle longest (one that
 * never sent a request, or a keep-alive connection between requests); only when every other connection is
 * busy with a request is the new one closed instead. A real client sends its request as soon as it is
 * connected, so idle sockets cannot keep it out.
 */
export function limitConnections(params: { server: Server; maxConnections: number; metrics: Metrics }): void {
  const { server, metrics } = params;
  /** Connections without a request in progress, longest idle first (Map keeps insertion order). */
  const idle = new Set<Socket>();
  let open = 0;
  server.on('connection', (socket: Socket) => {
    open++;
    idle.add(socket);
    socket.once('close', () => {
      open--;
      idle.delete(socket);
    });
    if (open <= params.maxConnections) return;
    const longestIdle = idle.values().next().value as Socket;
    if (longestIdle !== socket) metrics.countIdleConnectionClosed();
    longestIdle.destroy();
  });
  // One handler for every response (no closure per request): the socket is idle again once its response closed.
  function onResponseClose(this: ServerResponse): void {
    const socket = this.req.socket;
    if (!socket.destroyed) idle.add(socket);
  }
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    idle.delete(request.socket);
    response.on('close', onResponseClose);
  });
}

/**
 * Closes a connection whose answer the client stops reading for `timeoutMs`. Node's request and headers
 * timeouts end when the request has arrived, and its keep-alive timeout starts only once the answer has
 * gone: a client that asked for a large answer (a page of users, an explorer script) and never read it held
 * its connection, busy, for good, and as many such clients as MAX_CONNECTIONS kept every other client out
 * (the limit closes idle connections only). When the answer is about to be written (the request has been
 * read: its own timeouts are done), the socket gets an inactivity timeout: each write the client takes
 * restarts it, and once the answer is out Node's keep-alive timeout takes its place. With no listener, Node
 * destroys the socket when it runs out.
 */
export function closeStalledResponses(app: FastifyInstance, timeoutMs: number): void {
  // A callback hook, not an async one: an async onSend hook defers the answer by a tick, in which a route
  // that goes on after load shedding has answered (the 405 of other methods) could still change its status.
  // No closure a request: the answer carries its socket, and one listener serves every answer.
  app.addHook('onSend', (request, reply, payload, done) => {
    const answer = reply.raw as StallWatchedAnswer;
    const socket = request.raw.socket;
    answer[ANSWER_SOCKET] = socket;
    socket.setTimeout(timeoutMs);
    answer.on('finish', onAnswerFinished);
    done(null, payload);
  });
}

/** Set on an answer once its onSend ran (closeStalledResponses): the socket it is written to. */
const ANSWER_SOCKET = Symbol('answerSocket');
type StallWatchedAnswer = ServerResponse & { [ANSWER_SOCKET]?: Socket };

/**
 * Pipelined requests (HTTP/1.1): one that arrived while an answer was under way is already being handled, and
 * Node clears a socket's timeout only for a request that arrives after the keep-alive timeout was set. Once an
 * answer is out, Node hands the socket to the next answer (its own 'finish' listener runs first, and says which
 * in `_httpMessage`, a field of Node's own with no public equivalent): if that one has not reached onSend (its
 * handler may wait for the database, past REQUEST_TIMEOUT_MS), nothing is being written for the client to
 * read, so the timeout is cleared until that answer's own onSend sets it again.
 */
function onAnswerFinished(this: StallWatchedAnswer): void {
  const socket = this[ANSWER_SOCKET];
  const next = (socket as (Socket & { _httpMessage?: StallWatchedAnswer | null }) | undefined)?._httpMessage;
  if (socket && next && next !== this && next[ANSWER_SOCKET] === undefined) socket.setTimeout(0);
}

/**
 * Answers 503 with Retry-After, before authentication or any database work, while the event loop lags or
 * the heap is fuller than configured (@fastify/under-pressure samples both every second). /healthz is
 * exempt: an overloaded process is still alive, and restarting it would not help.
 */
export async function registerLoadShedding(
  app: FastifyInstance,
  params: { config: Config; metrics: Metrics },
): Promise<void> {
  const { maxEventLoopDelayMs, maxHeapUsedBytes } = params.config.loadShedding;
  await app.register(underPressure, {
    maxEventLoopDelay: maxEventLoopDelayMs,
    maxHeapUsedBytes: maxHeapUsedBytes ?? Math.floor(v8.getHeapStatistics().heap_size_limit * HEAP_SHARE),
    pressureHandler(request: FastifyRequest, reply: FastifyReply, type: string) {
      params.metrics.countLoadShed(type === 'heapUsedBytes' ? 'heap_used' : 'event_loop_delay');
      const message = `The service is overloaded; try again in ${OVERLOAD_RETRY_AFTER_SECONDS} s.`;
      void reply
        .code(503)
        .header('retry-after', String(OVERLOAD_RETRY_AFTER_SECONDS))
        .type('application/json; charset=utf-8');
      // Returned, not sent here: under-pressure sends what the handler returns and stops the request there; on
      // a nullish answer it lets the request go on (NEVER_SHED), so a 503 sent here went on to the route, which
      // only a synchronous onSend kept from answering over it (helper-87).
      // Its README: "Any other return value than a promise or nullish will be sent to the client with
      // reply.send"; its types (void | Promise<void>) lag behind that.
      const body = { errors: [{ message, extensions: { code: 'SERVICE_UNAVAILABLE', requestId: request.id } }] };
      return body as unknown as void;
    },
  });
}

/** Route config that exempts a route from load shedding (under-pressure lets the request through on a nullish answer). */
export const NEVER_SHED = { pressureHandler: () => undefined };

/**
 * Headers for every response, pages and API alike: no MIME sniffing, no referrer (URLs never leave for other
 * sites), no framing by other origins, and a browsing context of its own. Each page's Content-Security-Policy
 * is set where the page is served.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/**
 * A Host as RFC 9110 allows it: a registered name or IPv4 address (RFC 3986 unreserved characters), or an IPv6
 * literal in brackets, with an optional port; at most 255 characters. No userinfo (`user:pw@`), no spaces.
 */
const VALID_HOST = /^(?:[A-Za-z0-9._~-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$/;

/** SECURITY_HEADERS as header lines, for the answers written on the socket (clientErrorHandler). */
const SECURITY_HEADER_LINES = Object.entries(SECURITY_HEADERS)
  .map(([name, value]) => `${name}: ${value}\r\n`)
  .join('');

/** Node's default limit on a request's header section (`--max-http-header-size`). */
const MAX_HEADER_KIB = 16;

/**
 * Fastify's answer to what Node's HTTP parser refuses before there is a request (a header Node cannot read, a body
 * framed two ways, headers over the size limit, a timeout), in the API's error shape and in words: Fastify's own
 * answered `{"message":"Client Error"}`. With the security headers of every answer (no request id: there is no
 * request). Logged at debug level only: whoever can connect could fill the log.
 * The socket is closed after it, as Node does. Requests pipelined before the one refused are answered first
 * (answerAfterPending): written at once, the refusal took the place of their answers, and a mutation among them ran
 * while its client read a 400.
 */
export function clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const pipelined = socket as PipelinedSocket;
  // Data that reaches the parser after its error is refused again: one answer is enough.
  if (pipelined[REFUSAL_PENDING] === true) return;
  const [status, reason, code, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [
          408,
          'Request Timeout',
          'REQUEST_TIMEOUT',
          'The request did not arrive in time: send its headers and body without pausing.',
        ]
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [
            431,
            'Request Header Fields Too Large',
            'HEADERS_TOO_LARGE',
            `The request headers are too large: send at most ${MAX_HEADER_KIB} KiB of headers.`,
          ]
        : [
            400,
            'Bad Request',
            'BAD_REQUEST',
            `The request is not valid HTTP/1.1 (${error.code ?? 'unreadable'}): check its headers and the framing of its body.`,
          ];
  this.log.debug({ code: error.code }, 'refused a request that is not valid HTTP');
  answerAfterPending(pipelined, { status, reason, code, message });
}

/** Set on a socket whose refusal waits for the answers to the requests pipelined before it (answerAfterPending). */
const REFUSAL_PENDING = Symbol('refusalPending');
/** `_httpMessage`: Node's own field (no public equivalent) for the answer being written on the socket, if any. */
type PipelinedSocket = Socket & { _httpMessage?: ServerResponse | null; [REFUSAL_PENDING]?: true };

/**
 * answerOnSocket once no answer is under way on `socket`: Node gives the socket to each pipelined answer in turn
 * (its own 'finish' listener, which runs before this one, hands it to the next), so the refusal comes after the
 * answers of the requests before it, in order; the answers of requests received whole, that is, not that of the
 * refused request, whose body is what broke off. A socket closed meanwhile gets nothing.
 */
function answerAfterPending(socket: PipelinedSocket, params: Parameters<typeof answerOnSocket>[1]): void {
  const pending = socket._httpMessage;
  // The answer of the refused request itself (its body broke off or timed out) never comes: answer now.
  if (pending === null || pending === undefined || !pending.req.complete) {
    answerOnSocket(socket, params);
    return;
  }
  socket[REFUSAL_PENDING] = true;
  pending.once('finish', () => {
    if (!socket.destroyed) answerAfterPending(socket, params);
  });
}

/**
 * Writes an answer in the API's error shape straight on `socket` (there is no Fastify request), with the security
 * headers of every answer, `Cache-Control: no-store` and `extraHeaderLines` (each ending in CRLF), then closes it.
 */
function answerOnSocket(
  socket: Socket,
  params: { status: number; reason: string; code: string; message: string; extraHeaderLines?: string },
): void {
  if (socket.writable) {
    const body = JSON.stringify({ errors: [{ message: params.message, extensions: { code: params.code } }] });
    socket.write(
      `HTTP/1.1 ${params.status} ${params.reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n${SECURITY_HEADER_LINES}` +
        `${params.extraHeaderLines ?? ''}Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * Answers CONNECT, which Node hands to the server's 'connect' listeners rather than to Fastify (without one it
 * closed the connection without a word): this server is no proxy. CONNECT to `path` is a 405 with `allow` and
 * `message`, as the other methods the path does not offer; any other target (a proxy's `host:port`) a 501. Logged
 * at debug level only, as clientErrorHandler's answers.
 */
export function refuseConnect(server: Server, params: { path: string; allow: string; message: string }): void {
  server.on('connect', (request: IncomingMessage, socket: Socket) => {
    const [pathname] = (request.url ?? '').split('?', 1);
    if (pathname === params.path) {
      answerOnSocket(socket, {
        status: 405,
        reason: 'Method Not Allowed',
        code: 'BAD_REQUEST',
        message: params.message,
        extraHeaderLines: `Allow: ${params.allow}\r\n`,
      });
    } else {
      answerOnSocket(socket, {
        status: 501,
        reason: 'Not Implemented',
        code: 'BAD_REQUEST',
        message: 'CONNECT is not offered: this server is not a proxy.',
      });
    }
  });
}

/** The answer to an expectation other than 100-continue: its headers, and its body in the API's error shape. */
const EXPECTATION_FAILED_BODY = JSON.stringify({
  errors: [
    {
      message: 'The only expectation this server meets is Expect: 100-continue: send the request without it.',
      extensions: { code: 'EXPECTATION_FAILED' },
    },
  ],
});
const EXPECTATION_FAILED_HEADERS: Readonly<Record<string, string>> = {
  ...SECURITY_HEADERS,
  'content-type': 'application/json; charset=utf-8',
  'content-length': String(Buffer.byteLength(EXPECTATION_FAILED_BODY)),
  'cache-control': 'no-store',
  connection: 'close',
};

/**
 * Answers an HTTP/1.1 request whose Expect is not 100-continue (RFC 9110 10.1.1) with 417 EXPECTATION_FAILED in the
 * API's error shape: Node hands it to the server's 'checkExpectation' listeners rather than to Fastify, and without
 * one wrote a bare 417, no body and no security headers. Written through Node's response for that request (not on
 * the socket), so that it waits its turn behind the answers to requests pipelined before it; no request id, as
 * clientErrorHandler's answers (Fastify never saw the request). The connection is closed after it: whether the
 * client sends its body all the same is its guess. Logged nowhere: whoever can connect could fill the log.
 */
export function refuseExpectations(server: Server): void {
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    (request.socket as ClosingSocket)[CLOSES_AFTER_EXPECTATION] = true;
    response.writeHead(417, EXPECTATION_FAILED_HEADERS).end(EXPECTATION_FAILED_BODY);
  });
}

/**
 * Set on a socket whose 417 closes it (refuseExpectations). Node goes on parsing what the client pipelined behind
 * the refused request and hands it to Fastify, though its answer can never be written (the connection closes after
 * the 417): a mutation there ran and its client never heard of it. registerHostCheck's hook stops such a request
 * before any route. Requests pipelined before the refused one passed that hook already (callback hooks run as Node
 * emits each request, in order), and are answered first.
 */
const CLOSES_AFTER_EXPECTATION = Symbol('closesAfterExpectation');
type ClosingSocket = Socket & { [CLOSES_AFTER_EXPECTATION]?: true };

/** The refusals of registerHostCheck, as RFC 9112 (3.2) asks of a server. */
const HOST_MISSING = 'An HTTP/1.1 request must name its Host: send a Host header.';
const HOST_TWICE = 'Send the Host header once: this request has more than one.';
const HOST_INVALID = 'The Host header is not a valid host name.';
const HOST = 'host';

/**
 * Whether the request sent more than one Host line. Node keeps the first in `headers` (and drops the others),
 * a proxy in front may route by the last, so only the raw list (name, value, name, value, ...) shows it. As the
 * scans of Content-Type and of the credential headers: isHeaderName, which allocates nothing whatever the spelling.
 */
function hostSentTwice(rawHeaders: readonly string[]): boolean {
  let lines = 0;
  for (let index = 0; index < rawHeaders.length; index += 2) {
    if (isHeaderName(rawHeaders[index], HOST) && ++lines > 1) return true;
  }
  return false;
}

/**
 * Refuses, with 400 BAD_REQUEST in the API's error shape (requestId, `Cache-Control: no-store`) before any route,
 * what RFC 9112 (3.2) says a server must: an HTTP/1.1 request without Host (Node's own refusal, a bare 400, is
 * turned off in serverTimeouts), a request with more than one Host line, and a Host (or, behind a trusted proxy,
 * X-Forwarded-Host) that is not a host. Later code builds URLs from it (the GraphQL integration parses
 * `protocol://host/url`), where a space made a 500 and an error-level line, and a userinfo part was taken in
 * silently. Logged at info level by the request line only. An HTTP/1.0 request without Host passes (its
 * X-Forwarded-Host, if any, is checked).
 */
export function registerHostCheck(app: FastifyInstance): void {
  // Node keeps the first 2,000 header lines (`maxHeadersCount`) and drops the rest from `headers` and `rawHeaders`
  // alike: a second Host after 2,000 short lines (`a:` is 4 bytes, well under the 16 KiB limit) went unseen, and
  // the request was served by the first while a proxy may route by the last. The header size limit bounds them.
  app.server.maxHeadersCount = 0;
  // The host last found valid: nearly every request names the same one, and comparing strings costs less than the
  // pattern. Null until one is: an empty Host must not match a starting value and skip the pattern (it made a 500).
  let lastValid: string | null = null;
  const valid = (host: string): boolean => {
    if (host === lastValid) return true;
    if (!isValidHost(host)) return false;
    lastValid = host;
    return true;
  };
  const refusal = (request: FastifyRequest): string | null => {
    const raw = request.headers.host;
    if (raw === undefined) {
      const { httpVersionMajor, httpVersionMinor } = request.raw;
      if (httpVersionMajor !== 1 || httpVersionMinor !== 0) return HOST_MISSING;
      // HTTP/1.0 without Host: an X-Forwarded-Host a trusted proxy passed on is checked all the same.
      const forwarded = request.host as string | undefined;
      return forwarded === undefined || forwarded === '' || valid(forwarded) ? null : HOST_INVALID;
    }
    if (hostSentTwice(request.raw.rawHeaders)) return HOST_TWICE;
    // request.host is X-Forwarded-Host behind a trusted proxy, else the same string as Host.
    return valid(raw) && (request.host === raw || valid(request.host)) ? null : HOST_INVALID;
  };
  app.addHook('onRequest', (request, reply, done) => {
    // Behind a refused Expect (refuseExpectations): never run, never answered, as the connection closes.
    if ((request.raw.socket as ClosingSocket)[CLOSES_AFTER_EXPECTATION] === true) return void reply.hijack();
    const message = refusal(request);
    if (message === null) return done();
    void reply
      .code(400)
      .header('cache-control', NO_STORE)
      .send({ errors: [{ message, extensions: { code: 'BAD_REQUEST', requestId: request.id } }] });
  });
}

function isValidHost(host: string): boolean {
  return host.length <= 255 && VALID_HOST.test(host);
}

/**
 * What every response of `app` carries, errors included, set in one onSend hook: SECURITY_HEADERS and the
 * request's id (X-Request-Id, quoted in error reports). Routes whose answers carry keys or tokens add
 * `Cache-Control: no-store` in their own onSend (NO_STORE), whatever the status or method.
 */
export function registerResponseHeaders(app: FastifyInstance): void {
  // Callback style: no promise per response for constant headers.
  app.addHook('onSend', (request, reply, payload, done) => {
    setResponseHeaders(request, reply);
    done(null, payload);
  });
}

/**
 * Sets what registerResponseHeaders' hook sets, for an answer sent where no hook runs (Fastify's framework errors,
 * answered before routing).
 */
export function setResponseHeaders(request: FastifyRequest, reply: FastifyReply): void {
  void reply.headers(SECURITY_HEADERS);
  reply.header('x-request-id', request.id);
}

/** For answers that carry keys or tokens: no shared cache in front of the service may keep them. */
export const NO_STORE = 'no-store';

/**
 * A route's onSend hook (Fastify's callback form) that sets `Cache-Control: no-store` on each of its answers,
 * those sent before its handler runs too (load shedding's 503, a body that is not JSON, a wrong content type, a
 * body too large), as DESIGN.md asks of every /graphql answer. It passes `payload` on unchanged; never fails.
 */
export function noStoreOnSend(
  _request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: DoneFuncWithErrOrRes,
) {
  reply.header('cache-control', NO_STORE);
  done(null, payload);
}
