import { createHash } from 'node:crypto';

import { canonicalEmail, MAX_TYPED_EMAIL_LENGTH, normalizeEmail, signInEmail } from '../../src/users/user.validation';

/** Code points refuseHiddenCharacters refuses in every new email, whatever their canonical form: unassigned, private use. */
const NEVER_STORED = /[\p{Cn}\p{Co}\p{Cs}]/u;

/**
 * Every code point's canonical form in an email, inside the local part, inside a domain label and alone as a
 * label: one line per code point an email may hold, in code point order.
 */
function canonicalFormTable(): string {
  const lines: string[] = [];
  for (let codePoint = 0; codePoint <= 0x10ffff; codePoint++) {
    const c = String.fromCodePoint(codePoint);
    if (NEVER_STORED.test(c)) continue;
    lines.push(`${codePoint.toString(16)}\t${canonicalEmail(`x${c}y@x${c}y.${c}`)}`);
  }
  return lines.join('\n');
}

/**
 * The canonical form of every email is the same on every supported Node (CI runs this file on Node 20, 22 and
 * 24): instances of two Node versions on one database (a rolling upgrade) must store and find an address in one
 * form. Domain labels were mapped by node:url's UTS 46 tables, which differ between Node 22 (ada 2.9) and
 * Node 24 (ada 4): `ẞ` was `ss` on one and `ß` on the other.
 */
describe('the canonical form of an email does not depend on the Node version', () => {
  it('every code point, in the local part, inside a domain label and as a label, maps as pinned', () => {
    const digest = createHash('sha256').update(canonicalFormTable()).digest('hex');
    // The SHA-256 of canonicalFormTable() as tr46 6.0.0 (UTS 46 16.0) and Unicode 17 (ICU 78) give it. When this
    // changes (a new tr46 or ICU), stored emails may no longer be fixed points: write a migration, then update it.
    // To see which code points moved, write canonicalFormTable() to a file on each side and diff them.
    expect(digest).toBe(PINNED_DIGEST);
  });

  it.each<[string, string, string]>([
    // UTS 46 15.1 maps the capital sharp s to ß (xn--zca); before, to ss (another DNS name).
    ['the capital sharp s is the sharp s', 'a@\u1e9e.example', 'a@\u00df.example'],
    ['the sharp s stays (nontransitional processing)', 'a@stra\u00dfe.example', 'a@stra\u00dfe.example'],
    ['ss is not the sharp s', 'a@strasse.example', 'a@strasse.example'],
    ['a Greek letter with ypogegrammeni is alpha and iota', 'a@\u1fb3.example', 'a@\u03b1\u03b9.example'],
    ['a punycode label is decoded, then folded', 'a@XN--PXAVBM.example', 'a@\u03bf\u03b4\u03bf\u03c3.example'],
  ])('%s', (_label, typed, stored) => {
    expect(normalizeEmail(typed)).toBe(stored);
    expect(canonicalEmail(typed)).toBe(stored);
  });
});

describe('an email longer than MAX_TYPED_EMAIL_LENGTH as typed is never put in canonical form', () => {
  const longest = `a@${'b'.repeat(MAX_TYPED_EMAIL_LENGTH - 10)}.example`;
  it('sign-in looks up the canonical form up to the bound, and nothing past it', () => {
    expect(longest).toHaveLength(MAX_TYPED_EMAIL_LENGTH);
    expect(signInEmail(longest)).toBe(canonicalEmail(longest));
    expect(signInEmail(`${longest}x`)).toBeNull();
  });
  it('a new email past it is BAD_USER_INPUT on email, saying the limit', () => {
    expect(() => normalizeEmail(`${longest}x`)).toThrow('An email must be at most 254 characters long.');
  });
});

const PINNED_DIGEST = '3a5d5b144c2bf5d47ca2c8d7554f5ead31dd7bc100e1768850c5e1cf29d06500';
