import { randomBytes, scryptSync } from 'node:crypto';

import {
  checkPassword,
  hashPassword,
  isVerifiableHash,
  MAX_NORMALIZED_INPUT,
  MAX_PASSWORD_LENGTH,
  newPasswordProblem,
  normalizePassword,
  verifyPassword,
} from '../../src/authentication/password';
import { BadInputError } from '../../src/errors';

const NFC = 'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
const NFD = NFC.normalize('NFD');

/** A hash of `password` exactly as given, under `scheme`, with cheap parameters (they are read from the hash). */
function hashAs(scheme: 'scrypt' | 'scrypt-nfkc', password: string, N = 1024): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N, r: 8, p: 1, maxmem: 256 * N * 8 });
  return [scheme, N, 8, 1, salt.toString('base64'), hash.toString('base64')].join('$');
}

describe('password forms (NFKC, NIST SP 800-63B §5.1.1.2)', () => {
  describe('normalizePassword', () => {
    it('maps canonical and compatibility forms to one string', () => {
      expect(normalizePassword(NFD)).toBe(NFC);
      expect(normalizePassword('\uff41\uff42\uff43')).toBe('abc');
      expect(normalizePassword('o\ufb03ce')).toBe('office');
    });

    it('never throws, not even on an unpaired surrogate (it keeps it)', () => {
      expect(normalizePassword('a\ud800b')).toBe('a\ud800b');
      expect(normalizePassword('\udc00')).toBe('\udc00');
    });
  });

  describe('newPasswordProblem', () => {
    it('counts code points of the NFKC form', () => {
      expect(newPasswordProblem('\u00e9'.repeat(12).normalize('NFD'))).toBeNull();
      expect(newPasswordProblem('\u00e9'.repeat(11).normalize('NFD'))).toMatch(/12 to 1024 characters/);
      expect(newPasswordProblem('\u{1F600}'.repeat(12))).toBeNull();
      expect(newPasswordProblem('\u{1F600}'.repeat(11))).toMatch(/12 to 1024 characters/);
      expect(newPasswordProblem('x'.repeat(MAX_PASSWORD_LENGTH))).toBeNull();
      expect(newPasswordProblem('x'.repeat(MAX_PASSWORD_LENGTH + 1))).toMatch(/12 to 1024 characters/);
    });

    it('normalizes at most a bounded prefix of a huge input (U+FDFA grows 18-fold under NFKC)', async () => {
      const huge = '\ufdfa'.repeat(300_000);
      const normalize = jest.spyOn(String.prototype, 'normalize');
      try {
        expect(newPasswordProblem(huge)).toMatch(/12 to 1024 characters/);
        await expect(verifyPassword(huge, hashAs('scrypt-nfkc', 'some other password'))).resolves.toBe(false);
        const inputs = normalize.mock.contexts.map((text) => String(text).length);
        expect(inputs.length).toBeGreaterThan(0);
        expect(Math.max(...inputs)).toBeLessThanOrEqual(MAX_NORMALIZED_INPUT);
      } finally {
        normalize.mockRestore();
      }
    });

    it('refuses an unpaired surrogate and an unassigned code point', () => {
      expect(newPasswordProblem(`long enough pass\ud800`)).toMatch(/unpaired surrogate/);
      expect(newPasswordProblem(`long enough pass\u{50000}`)).toMatch(/does not define/);
    });

    it('refuses control characters of the NFKC form (RFC 8265), keeps format characters and spaces', () => {
      for (const control of ['\n', '\r', '\t', '\u0001', '\u001f', '\u007f', '\u0080', '\u009f']) {
        expect(newPasswordProblem(`long enough pass${control}`)).toMatch(/control character/);
      }
      for (const allowed of ['\u200d', '\u200f', '\ufe0f', ' ', '\u00a0', '\u3000']) {
        expect(newPasswordProblem(`long enough pass${allowed}x`)).toBeNull();
      }
    });
  });

  it('hashPassword refuses an unpaired surrogate (it would hash as U+FFFD) as BAD_USER_INPUT', async () => {
    await expect(hashPassword('long enough pass\udfff')).rejects.toBeInstanceOf(BadInputError);
  });

  describe('verifyPassword', () => {
    it('a new hash is made from the NFKC form and verifies any form of it', async () => {
      const stored = await hashPassword(NFD);
      expect(stored).toMatch(/^scrypt-nfkc\$131072\$8\$1\$/);
      await expect(verifyPassword(NFC, stored)).resolves.toBe(true);
      await expect(verifyPassword(NFD, stored)).resolves.toBe(true);
      await expect(verifyPassword('cafe creme brulee', stored)).resolves.toBe(false);
    });

    it('a hash from before normalization is tried with the NFKC form, then with the form as it arrives', async () => {
      await expect(verifyPassword(NFD, hashAs('scrypt', NFC))).resolves.toBe(true);
      await expect(verifyPassword(NFD, hashAs('scrypt', NFD))).resolves.toBe(true);
      await expect(verifyPassword('\uff41bc password', hashAs('scrypt', '\uff41bc password'))).resolves.toBe(true);
    });

    it('a new hash is never tried with the form as it arrives: the fallback is for old hashes only', async () => {
      // A hash no release makes (scrypt-nfkc of an unnormalized string): matched only if the raw form were tried.
      await expect(verifyPassword(NFD, hashAs('scrypt-nfkc', NFD))).resolves.toBe(false);
    });

    it('an unpaired surrogate matches nothing, not even a password holding U+FFFD', async () => {
      await expect(verifyPassword('pass\ud800', hashAs('scrypt', 'pass\ufffd'))).resolves.toBe(false);
      await expect(verifyPassword('pass\ud800', hashAs('scrypt-nfkc', 'pass\ufffd'))).resolves.toBe(false);
    });

    it('a password longer than any new one is compared cut, and does not match', async () => {
      const stored = hashAs('scrypt-nfkc', 'x'.repeat(MAX_PASSWORD_LENGTH));
      await expect(verifyPassword('x'.repeat(MAX_PASSWORD_LENGTH), stored)).resolves.toBe(true);
      await expect(verifyPassword('x'.repeat(100_000), stored)).resolves.toBe(false);
    });

    it('a miss on a new hash with an unnormalized password waits as long as a second computation, without one', async () => {
      const fresh = hashAs('scrypt-nfkc', 'some other password');
      const old = hashAs('scrypt', 'some other password');
      // An old hash tries the normalized form, then the form as it arrived: no pad, the second computation is real.
      await expect(checkPassword(NFD, old)).resolves.toEqual({ matches: false, padMs: 0 });
      // A new hash computes once, and its miss waits as long as that one computation took.
      const padded = await checkPassword(NFD, fresh);
      expect(padded.matches).toBe(false);
      expect(padded.padMs).toBeGreaterThan(0);
      // A password that arrived normalized has no second form to try, on either hash: no pad.
      await expect(checkPassword(NFC, fresh)).resolves.toEqual({ matches: false, padMs: 0 });
      await expect(checkPassword(NFC, old)).resolves.toEqual({ matches: false, padMs: 0 });
    });

    it('another format is no match', async () => {
      await expect(verifyPassword(NFC, 'bcrypt$whatever')).resolves.toBe(false);
      await expect(verifyPassword(NFC, '')).resolves.toBe(false);
    });
  });
  // Found by an adversarial review: parameters that passed the bounds on N's form and on 128·N·r, which
  // OpenSSL then refused (a 500 at sign-in), or which cost far more CPU than 8 of this service's hashes.
  describe('isVerifiableHash: the stored parameters node:crypto computes, within a bounded cost', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const stored = (N: number, r: number, p: number) => `scrypt-nfkc$${N}$${r}$${p}$c2FsdHNhbHQ=$${key}`;

    it('takes every hash this service makes', async () => {
      expect(isVerifiableHash(await hashPassword('a password of this service'))).toBe(true);
      expect(isVerifiableHash(hashAs('scrypt', 'an old one'))).toBe(true);
    });

    it('computes small N with large p (OpenSSL needs 128·r·(N + 2 + p) bytes), refuses N ≥ 2^(16·r): never throws', async () => {
      for (const hash of [stored(2, 1, 1), stored(4, 1, 16), stored(16, 1, 16)]) {
        expect({ hash, verifiable: isVerifiableHash(hash) }).toEqual({ hash, verifiable: true });
        await expect(checkPassword('whatever password', hash)).resolves.toEqual({ matches: false, padMs: 0 });
      }
      const password = 'the right password';
      const salt = Buffer.from('saltsalt');
      const made = scryptSync(password, salt, 32, { N: 2, r: 1, p: 16, maxmem: 2 ** 20 }).toString('base64');
      await expect(checkPassword(password, `scrypt-nfkc$2$1$16$${salt.toString('base64')}$${made}`)).resolves.toEqual({
        matches: true,
        padMs: 0,
      });
      expect(isVerifiableHash(stored(65536, 1, 1))).toBe(false);
      await expect(checkPassword('whatever password', stored(65536, 1, 1))).resolves.toEqual({
        matches: false,
        padMs: 0,
      });
      expect(isVerifiableHash(stored(65536, 4, 1))).toBe(true);
    });

    it("bounds the work (N·r·p), not only the memory: p = 16 at 1 GiB would be 128 of this service's hashes", () => {
      expect(isVerifiableHash(stored(2 ** 20, 8, 16))).toBe(false);
      expect(isVerifiableHash(stored(2 ** 17, 8, 16))).toBe(false);
      expect(isVerifiableHash(stored(2 ** 17, 8, 8))).toBe(true);
      expect(isVerifiableHash(stored(2 ** 20, 8, 1))).toBe(true);
      expect(isVerifiableHash(stored(4, 1, 1))).toBe(true);
      expect(isVerifiableHash(stored(32768, 1, 1))).toBe(true);
    });
  });
});
