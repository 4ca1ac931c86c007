import { isIP } from 'node:net';

import type { FastifyRequest } from 'fastify';

/**
 * The client's address as the audit log and the failed-authentication limit record it: Fastify's `request.ip`
 * (the peer, or with TRUST_PROXY the X-Forwarded-For entry of the first hop not trusted), unless that entry
 * is no IP address: a trusted proxy passed on what a client wrote there (a word, a key). Then the address of
 * the connection's peer, the proxy that passed it on, so that no client string is stored as an address. An IPv6
 * address with a zone id (`fe80::1%eth0`) counts as none: net.isIP accepts any run of letters, digits, dots and
 * dashes after the `%` (a key's body fits), and a zone names an interface of the client's own host, which means
 * nothing here (and each invented zone would be an address of its own to the failed-authentication limit).
 */
export function clientAddress(request: FastifyRequest): string {
  const ip = request.ip;
  const peer = request.socket.remoteAddress;
  if (ip === peer || (isIP(ip) !== 0 && !ip.includes('%'))) return ip;
  return peer ?? 'unknown';
}
