import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;

export const ACCESS_KEY_PREFIX = 'cak_';
export const ACCESS_KEY_LENGTH = ACCESS_KEY_PREFIX.length + RANDOM_LENGTH + CHECKSUM_LENGTH;
const SHAPE = new RegExp(`^${ACCESS_KEY_PREFIX}[0-9A-Za-z]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}$`);

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

/** `cak_` + 32 random base62 characters (~190 bits) + 6-character base62 CRC32 of them. */
export function generateAccessKey(): string {
  const randomPart = randomBase62(RANDOM_LENGTH);
  return ACCESS_KEY_PREFIX + randomPart + checksum(randomPart);
}

/** True when the key has the right shape and checksum; decided without any lookup. */
export function isWellFormedAccessKey(key: string): boolean {
  if (key.length !== ACCESS_KEY_LENGTH || !SHAPE.test(key)) return false;
  const randomPart = key.slice(ACCESS_KEY_PREFIX.length, ACCESS_KEY_PREFIX.length + RANDOM_LENGTH);
  return key.endsWith(checksum(randomPart));
}

/** What the admin screen may show without revealing the key: prefix and last four characters. */
export function keyHint(key: string): string {
  return `${ACCESS_KEY_PREFIX}...${key.slice(-4)}`;
}
