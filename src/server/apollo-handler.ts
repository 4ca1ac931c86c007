import { Readable } from 'node:stream';

import { type ApolloServer, type BaseContext, HeaderMap, type HTTPGraphQLRequest } from '@apollo/server';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * The request as Apollo reads it, made from Fastify's as @as-integrations/fastify 3.1's
 * `fastifyRequestToGraphQLRequest` makes it (same method, headers and body), except for the query string: it is
 * worked out when Apollo reads it (only for GET, in runHttpQuery), from the request target alone (searchOf). The
 * integration parsed the whole URL with `new URL(url, protocol://hostname/)` on every request, POSTs included,
 * which threw (a 500) on a request without Host (HTTP/1.0) or, behind a trusted proxy, with an X-Forwarded-Proto
 * that is no scheme (and, once read inside Apollo, that 500 came without an error line).
 */
class FastifyGraphQLRequest implements HTTPGraphQLRequest {
  readonly method: string;
  readonly headers: HeaderMap;
  readonly body: unknown;

  constructor(private readonly request: FastifyRequest) {
    // HEAD is answered as GET (RFC 9110 9.3.2; Fastify's HEAD route drops the body): Apollo itself refuses it.
    this.method = request.method === 'HEAD' ? 'GET' : request.method.toUpperCase();
    this.headers = headerMapOf(request.headers);
    this.body = request.body;
  }

  /** The request target's query string (see searchOf). */
  get search(): string {
    return searchOf(this.request.url);
  }
}

/** Any special-scheme origin: searchOf parses a bare `/?query` on it. */
const QUERY_BASE = 'http://localhost/';

/**
 * The query string of a request target (origin-form `/graphql?a=b#f` or absolute-form `http://h/graphql?a=b`) as
 * WHATWG URL's `search` gives it (with its `?`, percent-encoded; '' when there is none or it is empty): what the
 * integration handed on from `new URL(url, protocol://hostname/)`. Only the part from the first `?` to the first
 * `#` is parsed, under a constant base: neither the scheme nor the host changes a query (all special schemes encode
 * it alike), and a path on a fixed base cannot make the parse throw, whatever the Host, X-Forwarded-Proto or
 * request target. The parse stays (not a slice): URLSearchParams alone reads raw non-ASCII next to
 * percent-escapes differently from what the URL parser's encoding gives.
 */
export function searchOf(url: string): string {
  const hash = url.indexOf('#');
  const end = hash === -1 ? url.length : hash;
  const question = url.indexOf('?');
  return question === -1 || question >= end - 1 ? '' : new URL(`/${url.slice(question, end)}`, QUERY_BASE).search;
}

/**
 * Request headers that carry credentials (lower case, as Node gives header names). They are read in the Fastify
 * preHandler hook, which authenticates before Apollo runs; nothing in Apollo or in our plugins reads them, so they
 * are kept out of the HeaderMap every Apollo plugin sees (and could log).
 */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['x-access-key', 'authorization']);

/**
 * The request's headers in Apollo's HeaderMap, as the integration copies them (own properties only, empty values
 * left out, repeated ones joined with ", "), without the array `Object.entries` makes for each header, and
 * without the credentials (CREDENTIAL_HEADERS). Own keys, not `for...in`: an enumerable property put on
 * Object.prototype must not become a header (CSRF prevention reads them).
 */
function headerMapOf(headers: FastifyRequest['headers']): HeaderMap {
  const map = new HeaderMap();
  for (const key of Object.keys(headers)) {
    if (CREDENTIAL_HEADERS.has(key)) continue;
    const value = headers[key];
    if (value) map.set(key, Array.isArray(value) ? value.join(', ') : value);
  }
  return map;
}

/**
 * A Fastify route handler that answers with `apollo`, as @as-integrations/fastify 3.1's `fastifyApolloHandler`
 * does (its context function called with the request and reply, Apollo's headers and status set on the reply,
 * a complete body returned, an incremental one streamed), with the request converted by FastifyGraphQLRequest.
 * The integration's drain plugin is still the one to use.
 * @throws Error (Apollo's assertStarted) when `apollo` has not been started.
 */
export function apolloFastifyHandler<C extends BaseContext>(
  apollo: ApolloServer<C>,
  context: (request: FastifyRequest, reply: FastifyReply) => C | Promise<C>,
): (request: FastifyRequest, reply: FastifyReply) => Promise<unknown> {
  apollo.assertStarted('apolloFastifyHandler()');
  return async (request, reply) => {
    const { headers, body, status } = await apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: new FastifyGraphQLRequest(request),
      // As the integration: the context function's value handed on as it is (Apollo awaits it; no promise made here).
      context: (() => context(request, reply)) as () => Promise<C>,
    });
    for (const [key, value] of headers) void reply.header(key, value);
    void reply.code(status === undefined ? 200 : status);
    if (body.kind === 'complete') return body.string;
    return reply.send(Readable.from(body.asyncIterator));
  };
}
