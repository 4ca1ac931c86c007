import { isIP } from 'node:net';

import type { FastifyRequest } from 'fastify';

/** `203.0.113.7:51234`: an IPv4 address with the client's port, as some proxies write X-Forwarded-For entries. */
const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
/** `[2001:db8::7]` or `[2001:db8::7]:443`: an IPv6 address in brackets (RFC 3986's spelling), with or without a port. */
const BRACKETED_IPV6 = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/;

/** The address `entry` names, or null: an IP address as it is, or one of the port spellings above without its port. */
function addressOf(entry: string): string | null {
  if (isIP(entry) !== 0) return entry.includes('%') ? null : entry;
  const ported = IPV4_WITH_PORT.exec(entry) ?? BRACKETED_IPV6.exec(entry);
  return ported && isIP(ported[1]) !== 0 ? ported[1] : null;
}

/**
 * The client's address as the audit log and the failed-authentication limit record it: Fastify's `request.ip`
 * (the peer, or with TRUST_PROXY the X-Forwarded-For entry of the first hop not trusted). A proxy that writes the
 * client's port there (`203.0.113.7:51234`, `[2001:db8::7]:443`: Azure Application Gateway, IIS ARR) names the
 * client all the same: the address is taken without the port (else every client behind that proxy would be one
 * client to the limit, and one could lock all out). An entry that names no IP address (a trusted proxy passed on
 * what a client wrote there: a word, a key) is replaced with the address of the connection's peer, the proxy that
 * passed it on, so that no client string is stored as an address. An IPv6 address with a zone id (`fe80::1%eth0`)
 * counts as none: net.isIP accepts any run of letters, digits, dots and dashes after the `%` (a key's body fits),
 * and a zone names an interface of the client's own host, which means nothing here (and each invented zone would
 * be an address of its own to the failed-authentication limit).
 */
export function clientAddress(request: FastifyRequest): string {
  const ip = request.ip;
  const peer = request.socket.remoteAddress;
  if (ip === peer) return ip;
  return addressOf(ip) ?? peer ?? 'unknown';
}
