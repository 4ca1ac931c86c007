import { randomBytes } from 'node:crypto';

import { KeyCrypto } from '../../src/access-keys/key-crypto';
import { OpaqueIds } from '../../src/graphql/opaque-ids';

const ORG_A = { purpose: 'audit event', organizationId: '00000000-0000-4000-8000-00000000000a' };
const ORG_B = { purpose: 'audit event', organizationId: '00000000-0000-4000-8000-00000000000b' };

describe('OpaqueIds', () => {
  const ids = new OpaqueIds(new KeyCrypto(randomBytes(32)).opaqueIdKeys());

  it('opens what it made, for the same scope, across the whole bigint range', () => {
    for (const key of ['0', '1', '2', '255', '4294967296', '9223372036854775807']) {
      const token = ids.forScope(ORG_A).encode(key);
      expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(ids.forScope(ORG_A).decode(token)).toBe(key);
    }
  });

  it('is deterministic, and consecutive keys give unrelated tokens', () => {
    expect(ids.forScope(ORG_A).encode('41')).toBe(ids.forScope(ORG_A).encode('41'));
    const [one, two] = [ids.forScope(ORG_A).encode('41'), ids.forScope(ORG_A).encode('42')];
    const sharedPrefix = [...one].findIndex((c, i) => c !== two[i]);
    expect(sharedPrefix).toBeLessThan(4);
  });

  describe('when the token was not made for this scope and keyring', () => {
    it("another organization's or purpose's token does not open", () => {
      const token = ids.forScope(ORG_B).encode('7');
      expect(ids.forScope(ORG_A).decode(token)).toBeNull();
      expect(ids.forScope({ ...ORG_B, purpose: 'something else' }).decode(token)).toBeNull();
    });

    it('a token under another secret does not open', () => {
      const other = new OpaqueIds(new KeyCrypto(randomBytes(32)).opaqueIdKeys());
      expect(ids.forScope(ORG_A).decode(other.forScope(ORG_A).encode('7'))).toBeNull();
    });

    it('every single-bit change is refused', () => {
      const token = ids.forScope(ORG_A).encode('123456');
      const bytes = Buffer.from(token, 'base64url');
      for (let bit = 0; bit < bytes.length * 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[bit >> 3] ^= 1 << (bit & 7);
        expect(ids.forScope(ORG_A).decode(flipped.toString('base64url'))).toBeNull();
      }
      // The last character's 2 unused bits: another string for the same bytes is not the token either.
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const sibling = token.slice(0, -1) + alphabet[alphabet.indexOf(token.at(-1)!) + 1];
      expect(Buffer.from(sibling, 'base64url').equals(bytes)).toBe(true);
      expect(ids.forScope(ORG_A).decode(sibling)).toBeNull();
    });

    it('wrong shapes are refused without throwing', () => {
      for (const value of [
        '',
        '1',
        '123456',
        'A'.repeat(21),
        'A'.repeat(23),
        `${'A'.repeat(21)}=`,
        '\u0000'.repeat(22),
      ]) {
        expect(ids.forScope(ORG_A).decode(value)).toBeNull();
      }
    });
  });

  describe('when the secret is rotated', () => {
    const oldSecret = randomBytes(32);
    const newSecret = randomBytes(32);
    const before = new OpaqueIds(new KeyCrypto(oldSecret).opaqueIdKeys());
    const during = new OpaqueIds(new KeyCrypto(newSecret, [oldSecret]).opaqueIdKeys());
    const after = new OpaqueIds(new KeyCrypto(newSecret).opaqueIdKeys());

    it('tokens made before still open while the old secret is in the keyring, and not after it left', () => {
      const token = before.forScope(ORG_A).encode('99');
      expect(during.forScope(ORG_A).decode(token)).toBe('99');
      expect(after.forScope(ORG_A).decode(token)).toBeNull();
    });

    it('new tokens are made with the new secret', () => {
      expect(after.forScope(ORG_A).decode(during.forScope(ORG_A).encode('99'))).toBe('99');
    });
  });

  it('refuses an empty keyring or a key of the wrong length', () => {
    expect(() => new OpaqueIds([])).toThrow(RangeError);
    expect(() => new OpaqueIds([randomBytes(32)])).toThrow(RangeError);
  });
});
