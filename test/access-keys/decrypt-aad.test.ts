import { createDecipheriv, randomBytes } from 'node:crypto';

import { KeyCrypto } from '../../src/access-keys/key-crypto';

/**
 * KeyCrypto.decrypt writes the user id (its AES-GCM associated data) into a buffer it reuses (aadOf) instead of
 * a new one per call. Review: the answer must stay byte for byte what a fresh Buffer.from(userId) gave, for any
 * user id (empty, up to and past the scratch buffer's 85 characters, multi-byte, lone surrogates), and a
 * shorter id written after a longer one must not leave the longer one's bytes in the associated data.
 */
describe('KeyCrypto.decrypt with a reused associated-data buffer', () => {
  const crypto = new KeyCrypto(randomBytes(32));

  /** decrypt as it was before the scratch buffer (the reference). */
  function reference(ciphertext: Buffer, userId: string): string {
    const key = (crypto as unknown as { encryptionKey: Buffer }).encryptionKey;
    const decipher = createDecipheriv('aes-256-gcm', key, ciphertext.subarray(0, 12));
    decipher.setAAD(Buffer.from(userId));
    decipher.setAuthTag(ciphertext.subarray(12, 28));
    return Buffer.concat([decipher.update(ciphertext.subarray(28)), decipher.final()]).toString('utf8');
  }

  function outcome(run: () => string): string {
    try {
      return `ok:${run()}`;
    } catch (error) {
      return `throws:${(error as Error).message}`;
    }
  }

  const ids = [
    '',
    'a',
    '3f1c2a8e-9d4b-4c1e-8f2a-1b2c3d4e5f60',
    'a'.repeat(84),
    'a'.repeat(85),
    'a'.repeat(86),
    'a'.repeat(300),
    '€'.repeat(85),
    '€'.repeat(86),
    '😀'.repeat(42) + 'a',
    '😀'.repeat(43),
    '\ud800',
    'x\udfffy',
    'é'.repeat(85),
  ];
  const keys = ['', 'crm_live_abc', 'ключ-🔑', 'k'.repeat(1000)];

  it('opens what encrypt sealed, for every id and key, as the reference does', () => {
    for (const id of ids) {
      for (const key of keys) {
        const sealed = crypto.encrypt(key, id);
        expect(crypto.decrypt(sealed, id)).toBe(key);
        expect(reference(sealed, id)).toBe(key);
      }
    }
  });

  it('refuses every other id, including a prefix or extension of the last one written', () => {
    for (const id of ids) {
      const sealed = crypto.encrypt('secret', id);
      for (const otherId of [...ids, `${id}a`, id.slice(0, -1), id.toUpperCase()]) {
        // Write a longer id into the scratch buffer first: its tail must not count for the next one.
        outcome(() => crypto.decrypt(crypto.encrypt('x', 'z'.repeat(85)), 'z'.repeat(85)));
        expect(outcome(() => crypto.decrypt(sealed, otherId))).toBe(outcome(() => reference(sealed, otherId)));
      }
    }
  });

  it('tampered ciphertexts: the same answer as the reference (refused)', () => {
    const id = 'b'.repeat(40);
    const sealed = crypto.encrypt('secret', id);
    for (let at = 0; at < sealed.length; at++) {
      const bad = Buffer.from(sealed);
      bad[at] ^= 1;
      expect(outcome(() => crypto.decrypt(bad, id))).toBe(outcome(() => reference(bad, id)));
      expect(outcome(() => crypto.decrypt(bad, id))).toMatch(/^throws:/);
    }
  });
});
