import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;

export const ACCESS_KEY_PREFIX = 'cak_';
/** Session tokens of people who signed in share the scheme, with their own prefix. */
export const SESSION_TOKEN_PREFIX = 'cas_';
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

/**
 * One character as it may stand in a text a client sent: either letter case, or percent-encoded (at any depth:
 * `%63`, `%2563`, ...), so that a URL that was decoded once, or could not be decoded, still shows it.
 */
function anySpelling(character: string): string {
  const codes = new Set([character.toLowerCase(), character.toUpperCase()].map((c) => c.charCodeAt(0).toString(16)));
  return `(?:${character}|%(?:25)*(?:${[...codes].join('|')}))`;
}

/** A base62 character, plain or percent-encoded (0-9 are %30-%39, A-Z %41-%5A, a-z %61-%7A). */
const BASE62_ANY_SPELLING = '(?:[0-9a-z]|%(?:25)*(?:3[0-9]|[46][1-9a-f]|[57][0-9a]))';

/**
 * Access keys (cak_) and session tokens (cas_) wherever they stand in a text, and at least 8 characters of
 * their body (a truncated key is still most of a key): after any character (`/_cak_…`, `x cak_…`), in either
 * letter case (`CAK_…`), percent-encoded (`%63ak_…`, `cak%5F…`, `%2563…`). What the logger, a leak report's
 * location and a proxy's request id are checked against (see redactCredentials, holdsCredential).
 */
const CREDENTIAL_SHAPE = new RegExp(
  `(?:${[ACCESS_KEY_PREFIX, SESSION_TOKEN_PREFIX].map((prefix) => [...prefix].map(anySpelling).join('')).join('|')})` +
    `${BASE62_ANY_SPELLING}{8,}`,
  // Without regard to letter case: `CAK_`, and the hex digits of an escape (`%5F`, `%5f`).
  'gi',
);

/** What stands in the place of a credential in a log line or a stored text. */
export const CREDENTIAL_CENSOR = '[redacted]';

/**
 * `text` with every credential-shaped run (see CREDENTIAL_SHAPE: any spelling of cak_/cas_ followed by 8 or
 * more base62 characters) replaced by CREDENTIAL_CENSOR; the rest of the text is kept as it was.
 */
export function redactCredentials(text: string): string {
  return text.replace(CREDENTIAL_SHAPE, CREDENTIAL_CENSOR);
}

/** True when `text` holds a credential-shaped run anywhere (see redactCredentials). */
export function holdsCredential(text: string): boolean {
  CREDENTIAL_SHAPE.lastIndex = 0;
  return CREDENTIAL_SHAPE.test(text);
}

/** What the admin screen may show without revealing the key: prefix and last four characters. */
export function keyHint(key: string): string {
  return `${ACCESS_KEY_PREFIX}...${key.slice(-4)}`;
}
