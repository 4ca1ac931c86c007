import { Readable } from 'node:stream';

import { type ApolloServer, type BaseContext, HeaderMap, type HTTPGraphQLRequest } from '@apollo/server';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * The request as Apollo reads it, made from Fastify's as @as-integrations/fastify 3.1's
 * `fastifyRequestToGraphQLRequest` makes it (same method, headers, body and query string), except that the query
 * string is worked out when Apollo reads it: Apollo reads `search` only for GET (runHttpQuery), and the
 * integration parsed the whole URL with `new URL` (about 2 us) on every request, POSTs included.
 */
class FastifyGraphQLRequest implements HTTPGraphQLRequest {
  readonly method: string;
  readonly headers: HeaderMap;
  readonly body: unknown;

  constructor(private readonly request: FastifyRequest) {
    this.method = request.method.toUpperCase();
    this.headers = headerMapOf(request.headers);
    this.body = request.body;
  }

  /** The query string with its `?` ('' without one), as the integration computed it (WHATWG URL's `search`). */
  get search(): string {
    const { request } = this;
    return new URL(request.url, `${request.protocol}://${request.hostname}/`).search;
  }
}

/**
 * The request's headers in Apollo's HeaderMap, as the integration copies them (own properties only, empty values
 * left out, repeated ones joined with ", "), without the array `Object.entries` makes for each header. Own keys,
 * not `for...in`: an enumerable property put on Object.prototype must not become a header (CSRF prevention reads
 * them).
 */
function headerMapOf(headers: FastifyRequest['headers']): HeaderMap {
  const map = new HeaderMap();
  for (const key of Object.keys(headers)) {
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
