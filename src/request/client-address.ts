import { isIP } from 'node:net';

import type { FastifyRequest } from 'fastify';

/**
 * The client's address as the audit log and the failed-authentication limit record it: Fastify's `request.ip`
 * (the peer, or with TRUST_PROXY the X-Forwarded-For entry of the first hop not trusted), unless that entry
 * is no IP address: a trusted proxy passed on what a client wrote there (a word, a key). Then the address of
 * the connection's peer, the proxy that passed it on, so that no client string is stored as an address.
 */
export function clientAddress(request: FastifyRequest): string {
  const ip = request.ip;
  const peer = request.socket.remoteAddress;
  if (ip === peer || isIP(ip) !== 0) return ip;
  return peer ?? 'unknown';
}
