import { randomBytes, scryptSync } from 'node:crypto';

import {
  checkPassword,
  hashPassword,
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
});
