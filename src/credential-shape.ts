/**
 * What a credential looks like inside any text, for the places that must never keep one: log lines
 * (src/logger.ts), a leak report's stored location, a proxy's request id, a 404 or 4xx answer. In the base
 * layer so that the logger can use it; the keys and tokens themselves are made in src/access-keys/key-format.ts.
 */

/** Access keys: `cak_` + 32 random base62 characters + a 6-character checksum (src/access-keys/key-format.ts). */
export const ACCESS_KEY_PREFIX = 'cak_';
/** Session tokens of people who signed in share the scheme, with their own prefix. */
export const SESSION_TOKEN_PREFIX = 'cas_';

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
