import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import proxyAddr from '@fastify/proxy-addr';
import type { FastifyInstance } from 'fastify';

import type { Config } from '../config';
import { holdsCredential } from '../credential-shape';
import { pathOnly } from '../logger';
import { clientAddress } from '../request/client-address';

/**
 * Request ids and request logs. Every request gets an id (logged with each of its lines, sent back in
 * `x-request-id`, quoted by clients in bug reports); behind a trusted proxy the proxy's own id is kept, so one
 * id follows the request through the proxy's logs and this service's.
 */

/**
 * What a proxy's X-Request-Id may look like to be kept: UUIDs, nginx's 32 hex digits, AWS/Heroku styles.
 * Anything else (line breaks, quotes, very long values) is replaced, so no client can forge log lines; so is an
 * id that holds something shaped like a key or session token (holdsCredential), which would otherwise be sent
 * back in `x-request-id` and stored in audit_events.request_id.
 */
const PROXY_REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}$/;

/** Whether the connection's peer is a proxy that TRUST_PROXY believes (a hop count trusts the nearest hops). */
function peerTrust(trustProxy: Config['trustProxy']): ((peer: string) => boolean) | null {
  if (trustProxy === false) return null;
  if (typeof trustProxy === 'number') return trustProxy > 0 ? () => true : null;
  const trusted = proxyAddr.compile(trustProxy);
  return (peer) => trusted(peer, 0);
}

/**
 * Fastify's `genReqId`: the X-Request-Id of a trusted proxy when it has a sane shape and holds no credential,
 * otherwise a new UUID.
 * Without TRUST_PROXY the header is never read: a client could otherwise choose ids that collide with others.
 */
export function requestIdGenerator(trustProxy: Config['trustProxy']): (request: IncomingMessage) => string {
  const trusts = peerTrust(trustProxy);
  if (!trusts) return () => randomUUID();
  return (request) => {
    const header = request.headers['x-request-id'];
    const peer = request.socket.remoteAddress;
    if (
      typeof header === 'string' &&
      PROXY_REQUEST_ID.test(header) &&
      !holdsCredential(header) &&
      peer &&
      trusts(peer)
    ) {
      return header;
    }
    return randomUUID();
  };
}

/**
 * With LOG_REQUESTS, one info line per response: method, path (never the query string, where a client may
 * have put a credential), status, duration and client address, plus the request id every line carries. No
 * headers, so no key, token or cookie, whatever the request sent.
 */
export function registerRequestLog(app: FastifyInstance, params: { enabled: boolean }): void {
  if (!params.enabled) return;
  app.addHook('onResponse', (request, reply, done) => {
    request.log.info(
      {
        method: request.method,
        path: pathOnly(request.raw.url ?? ''),
        statusCode: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        client: clientAddress(request),
      },
      'request completed',
    );
    done();
  });
}
