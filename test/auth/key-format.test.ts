import { randomBytes } from 'node:crypto';

import { KeyCrypto } from '../../src/access-keys/key-crypto';
import {
  ACCESS_KEY_LENGTH,
  generateAccessKey,
  generateSessionToken,
  isWellFormedAccessKey,
  keyHint,
  randomBase62,
} from '../../src/access-keys/key-format';
import { CREDENTIAL_CENSOR, holdsCredential, redactCredentials } from '../../src/credential-shape';

describe('access key format', () => {
  it('is cak_ + 32 base62 + 6 base62 checksum characters, 42 in all', () => {
    const key = generateAccessKey();
    expect(key).toMatch(/^cak_[0-9A-Za-z]{38}$/);
    expect(key).toHaveLength(ACCESS_KEY_LENGTH);
    expect(ACCESS_KEY_LENGTH).toBe(42);
    expect(isWellFormedAccessKey(key)).toBe(true);
  });

  it('detects every single-character substitution through the checksum', () => {
    const key = generateAccessKey();
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    for (let i = 4; i < key.length; i++) {
      for (const c of alphabet) {
        if (c === key[i]) continue;
        expect(isWellFormedAccessKey(key.slice(0, i) + c + key.slice(i + 1))).toBe(false);
      }
    }
  });

  it('draws characters uniformly enough (no base62 modulo bias)', () => {
    const counts = new Map<string, number>();
    for (const c of randomBase62(62 * 2000)) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    for (const n of counts.values()) expect(Math.abs(n - 2000)).toBeLessThan(300);
  });

  it('never repeats in 10,000 keys', () => {
    const keys = new Set(Array.from({ length: 10000 }, generateAccessKey));
    expect(keys.size).toBe(10000);
  });

  it('hints with the prefix and the last four characters only', () => {
    const key = generateAccessKey();
    expect(keyHint(key)).toBe(`cak_...${key.slice(-4)}`);
  });
});

describe('key crypto', () => {
  const crypto = new KeyCrypto(randomBytes(32));

  it('round-trips a key bound to its user id, and refuses another user id', () => {
    const key = generateAccessKey();
    const ciphertext = crypto.encrypt(key, 'user-a');
    expect(ciphertext.toString('latin1')).not.toContain(key.slice(4));
    expect(crypto.decrypt(ciphertext, 'user-a')).toBe(key);
    expect(() => crypto.decrypt(ciphertext, 'user-b')).toThrow();
  });

  it('digests deterministically per secret', () => {
    const key = generateAccessKey();
    expect(crypto.digest(key).equals(crypto.digest(key))).toBe(true);
    expect(new KeyCrypto(randomBytes(32)).digest(key).equals(crypto.digest(key))).toBe(false);
  });

  it('has a fingerprint that tells secrets apart', () => {
    const secret = randomBytes(32);
    expect(new KeyCrypto(secret).matchesFingerprint(new KeyCrypto(secret).fingerprint)).toBe(true);
    expect(new KeyCrypto(randomBytes(32)).matchesFingerprint(new KeyCrypto(secret).fingerprint)).toBe(false);
  });
});

describe('credential shape (what redaction finds in any text)', () => {
  it('finds every generated key and session token, in any spelling, and keeps the text around it', () => {
    for (let i = 0; i < 50; i++) {
      for (const credential of [generateAccessKey(), generateSessionToken()]) {
        const body = credential.slice(4);
        const spellings = [
          credential,
          credential.toUpperCase(),
          `${credential.slice(0, 3).toUpperCase()}_${body}`,
          encodeURIComponent(credential).replace('_', '%5F'),
          `%2563${credential.slice(1)}`,
          `${credential.slice(0, 4)}%${body.charCodeAt(0).toString(16).toUpperCase()}${body.slice(1)}`,
        ];
        for (const spelling of spellings) {
          expect(holdsCredential(`x_${spelling}!`)).toBe(true);
          expect(redactCredentials(`see x_${spelling}!`)).toBe(`see x_${CREDENTIAL_CENSOR}!`);
        }
      }
    }
  });

  it('leaves words and short runs alone', () => {
    for (const text of ['because_of it', 'cak_1234567', 'cas_', 'https://chat.example/support/4711', 'ca k_12345678']) {
      expect(holdsCredential(text)).toBe(false);
      expect(redactCredentials(text)).toBe(text);
    }
  });
});
