import { createPublicKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';

import { ConfigError } from '../config';

/** Where an operator gets the file's contents; the service never fetches it itself. */
export const GITHUB_KEYS_URL = 'https://api.github.com/meta/public_keys/secret_scanning';

/**
 * Reads the public keys GitHub signs secret scanning messages with, from the file named by
 * SECRET_SCANNING_GITHUB_KEYS: the JSON document GitHub's public-keys API answers, saved as it is,
 * `{"public_keys":[{"key_identifier":"…","key":"-----BEGIN PUBLIC KEY-----…","is_current":true}]}`.
 * Every listed key is accepted, current or not (`is_current` marks the one GitHub signs new messages with;
 * messages signed just before a rotation still carry the older one). Each key must be an ECDSA P-256 key
 * (GitHub's ECDSA-NIST-P256V1-SHA256). Returns the keys by identifier, every key listed under an identifier
 * (one that appears twice keeps both keys, not only the last); throws ConfigError naming the file and what is
 * wrong with it, never its contents.
 */
export function loadGithubScanningKeys(file: string): ReadonlyMap<string, readonly KeyObject[]> {
  const setting = `SECRET_SCANNING_GITHUB_KEYS (${file})`;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `${setting} names a file that cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`,
    );
  }
  const expected = `save the answer of ${GITHUB_KEYS_URL} in it as it is`;
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new ConfigError(`${setting} is not JSON: ${expected}.`);
  }
  const entries = (document as { public_keys?: unknown } | null)?.public_keys;
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new ConfigError(`${setting} holds no "public_keys" list: ${expected}.`);
  }
  const keys = new Map<string, KeyObject[]>();
  entries.forEach((entry: { key_identifier?: unknown; key?: unknown } | null, index) => {
    const identifier = entry?.key_identifier;
    if (typeof identifier !== 'string' || identifier === '') {
      throw new ConfigError(`${setting}: public_keys[${index}] has no "key_identifier": ${expected}.`);
    }
    let key: KeyObject;
    try {
      key = createPublicKey(String(entry?.key));
    } catch {
      throw new ConfigError(`${setting}: the key "${identifier}" is not a PEM public key: ${expected}.`);
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new ConfigError(`${setting}: the key "${identifier}" is not an ECDSA P-256 key, which GitHub signs with.`);
    }
    keys.set(identifier, [...(keys.get(identifier) ?? []), key]);
  });
  return keys;
}
