import ipaddr from 'ipaddr.js';

/** Bits of an IPv6 address that name one client: a /64 is what one subscriber or one host is given. */
export const IPV6_CLIENT_PREFIX_BITS = 64;

/**
 * The rate-limit bucket of a client address: an IPv4 address as it is (an IPv4-mapped IPv6 one as its IPv4
 * form), an IPv6 address as its /64 network (`2001:db8:1:2::/64`), since anyone given a /64 can rotate through
 * 2^64 addresses of it (RFC 4941 temporary addresses do so on their own). Anything that does not parse is its
 * own bucket, unchanged. Every count and bound kept per client address (failed attempts, reservations,
 * password hashing) is kept per bucket.
 */
export function clientBucket(address: string): string {
  // Only the standard forms: ipaddr.isValid would also take IPv4 shorthands such as "1.2.3".
  if (!ipaddr.IPv6.isValid(address)) return address;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const network = ipaddr.IPv6.networkAddressFromCIDR(`${parsed.toString()}/${IPV6_CLIENT_PREFIX_BITS}`);
  return `${network.toString()}/${IPV6_CLIENT_PREFIX_BITS}`;
}
