import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

import { ACCESS_KEY_PREFIX, SESSION_TOKEN_PREFIX } from '../credential-shape';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;

// The prefixes live with the rule that finds keys and tokens in any text (logs, stored locations, request ids).
export { ACCESS_KEY_PREFIX, SESSION_TOKEN_PREFIX } from '../credential-shape';
const PREFIX_LENGTH = 4;
export const ACCESS_KEY_LENGTH = PREFIX_LENGTH + RANDOM_LENGTH + CHECKSUM_LENGTH;
const BODY = new RegExp(`^[0-9A-Za-z]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}$`);

/** Uniform base62 characters: bytes >= 248 are dropped so that `% 62` has no bias. */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += BASE62[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function checksum(randomPart: string): string {
  let value = crc32(randomPart);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

/** prefix + 32 random base62 characters (~190 bits) + 6-character base62 CRC32 of them (GitHub's scheme). */
function generateToken(prefix: string): string {
  const randomPart = randomBase62(RANDOM_LENGTH);
  return prefix + randomPart + checksum(randomPart);
}

/** True when the value has the prefix, shape and checksum; decided without any lookup. */
function isWellFormedToken(value: string, prefix: string): boolean {
  if (value.length !== ACCESS_KEY_LENGTH || !value.startsWith(prefix)) return false;
  const body = value.slice(PREFIX_LENGTH);
  return BODY.test(body) && body.endsWith(checksum(body.slice(0, RANDOM_LENGTH)));
}

/** A new access key: `cak_` + 32 random base62 characters + their 6-character checksum (42 characters). */
export const generateAccessKey = (): string => generateToken(ACCESS_KEY_PREFIX);
/** A new session token: `cas_` + 32 random base62 characters + their 6-character checksum (42 characters). */
export const generateSessionToken = (): string => generateToken(SESSION_TOKEN_PREFIX);
/**
 * True when `value` is shaped like an access key, checksum included (no lookup): how a typo is told apart
 * from an unknown key (MALFORMED_CREDENTIALS vs INVALID_CREDENTIALS).
 */
export const isWellFormedAccessKey = (value: string): boolean => isWellFormedToken(value, ACCESS_KEY_PREFIX);
/** True when `value` is shaped like a session token, checksum included (no lookup). */
export const isWellFormedSessionToken = (value: string): boolean => isWellFormedToken(value, SESSION_TOKEN_PREFIX);

/** What the admin screen may show without revealing the key: prefix and last four characters. */
export function keyHint(key: string): string {
  return `${ACCESS_KEY_PREFIX}...${key.slice(-4)}`;
}
