import { createHash, randomBytes } from 'node:crypto';

import fc from 'fast-check';

import { generateAccessKey } from '../../src/access-keys/key-format';
import { SaltedSha256 } from '../../src/access-keys/salted-sha256';

/** node:crypto's streaming SHA-256 of hex(salt) || UTF-8(value), one character per byte as SaltedSha256 returns it. */
function reference(salt: Buffer, value: string): string {
  const digest = createHash('sha256').update(salt.toString('hex'), 'ascii').update(value, 'utf8').digest();
  return String.fromCharCode(...digest);
}

describe('salted SHA-256 (the auth cache key)', () => {
  const salt = randomBytes(64);
  const hasher = new SaltedSha256(salt);

  it('is SHA-256 for ASCII of every length around the one- and two-block boundaries', () => {
    for (let length = 0; length <= 200; length++) {
      const value = randomBytes(length).toString('base64').slice(0, length).padEnd(length, 'x');
      expect(hasher.digest(value)).toBe(reference(salt, value));
    }
  });

  it('is SHA-256 for any string, header bytes outside ASCII and astral characters included', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc.string({ unit: 'grapheme-ascii', maxLength: 120 }),
          // Node decodes header values as latin1: each byte is one char code up to 0xff.
          fc.string({
            unit: fc.integer({ min: 0, max: 0xff }).map((code) => String.fromCharCode(code)),
            maxLength: 120,
          }),
        ),
        (value) => {
          expect(hasher.digest(value)).toBe(reference(salt, value));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('depends on the salt, and repeats for the same input', () => {
    // Generated, never committed: a checksum-valid key in the repository would be a leak to secret scanners.
    const key = generateAccessKey();
    expect(hasher.digest(key)).toBe(hasher.digest(key));
    expect(new SaltedSha256(randomBytes(64)).digest(key)).not.toBe(hasher.digest(key));
    expect(hasher.digest(key)).toHaveLength(32);
  });

  it('refuses a salt shorter than 256 bits', () => {
    expect(() => new SaltedSha256(randomBytes(31))).toThrow(/at least 32 bytes/);
    expect(new SaltedSha256(randomBytes(32)).digest('x')).toHaveLength(32);
  });
});
