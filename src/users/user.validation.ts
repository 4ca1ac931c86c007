import { toUnicode } from 'tr46';

import { newPasswordProblem } from '../authentication/password';
import { BadInputError } from '../errors';
import { refuseHiddenCharacters } from '../graphql/text-checks';

const MAX_EMAIL_LENGTH = 254;
/**
 * The longest email, as typed (UTF-16 code units), that is put in canonical form: four times the longest stored
 * one (NFKC composes at most three code points into one, as Hangul jamo into a syllable), so no address is
 * refused by it, while a sign-in or a createUser of a megabyte of labels cannot hold the event loop for a second
 * (tr46 maps a label in microseconds).
 */
export const MAX_TYPED_EMAIL_LENGTH = 4 * MAX_EMAIL_LENGTH;
// Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is the mail server's call.
const EMAIL = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u;

/** NFKC, lower-cased (full Unicode), Greek final sigma folded into σ (case folding: one letter). */
function fold(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .normalize('NFKC')
    .replace(/\u03c2/g, '\u03c3');
}

/** IDNA's label separators after NFKC (UTS 46 maps U+3002, and U+FF0E and U+FF61 through NFKC, to a dot). */
const IDEOGRAPHIC_FULL_STOP = /\u3002/g;
const A_LABEL = /^xn--/;

/**
 * UTS 46 processing as the URL Standard's "domain to ASCII" runs it (beStrict false: nontransitional, CheckBidi
 * and CheckJoiners on, CheckHyphens and UseSTD3ASCIIRules off), which is what node:url's domainToUnicode did
 * before tr46 replaced it.
 */
const UTS46_PROCESSING = {
  checkBidi: true,
  checkJoiners: true,
  checkHyphens: false,
  useSTD3ASCIIRules: false,
  transitionalProcessing: false,
  ignoreInvalidPunycode: false,
} as const;

/**
 * The URL Standard's forbidden domain code points (3.2, Hosts): a host holding one after UTS 46 is no host.
 * C0 controls, space, # % / : < > ? @ [ \ ] ^ | and DEL (here every control: UTS 46 disallows C1 ones too).
 */
const FORBIDDEN_DOMAIN_CODE_POINT = /[\p{Cc} #%/:<>?@[\\\]^|]/u;

/**
 * One domain label as UTS 46 maps it (an A-label decoded, and its case folding and mappings, which go further
 * than NFKC and lower case: ᾳ is αι, ᲀ is в), or '' for a label UTS 46 or the URL Standard refuses.
 * The tables are tr46's (UTS 46 16.0), pinned in package.json, not the running Node's: node:url's differ
 * between Node versions (ẞ was ss in Node 20 and 22, ß in Node 24 after UTS 46 15.1), and instances of two
 * Node versions on one database must store and find an email in one form. tr46 6.0.0 maps every label as
 * Node 24's node:url does, except labels with a percent escape, which node:url decoded first (`x%41y` was
 * `xay`); normalizeEmail refuses those now. Upgrading tr46 can change stored forms: a migration's decision.
 */
function uts46Label(label: string): string {
  const { domain, error } = toUnicode(label, UTS46_PROCESSING);
  return error || FORBIDDEN_DOMAIN_CODE_POINT.test(domain) ? '' : domain;
}

/**
 * The form every email is stored and looked up in: trimmed, NFKC, lower-cased (full Unicode, not
 * PostgreSQL's collation-dependent lower()), Greek final sigma as σ. NFKC rather than NFC because an email is an
 * identifier (the sign-in name): fullwidth letters, ligatures and other compatibility forms fold into the letters
 * they look like, as PRECIS (RFC 8265) maps widths for usernames. The domain is in its Unicode form: IDNA's
 * ideographic full stop is a dot, and each label is first mapped as UTS 46 maps it (so that two domains with one
 * DNS name have one form; a punycode label is decoded), then folded as typed text is (a decoded label may hold
 * capitals or a final sigma); a label UTS 46 refuses is only folded (normalizeEmail refuses it in a new email).
 * The same on every Node: UTS 46's tables are tr46's (see uts46Label), Unicode's (NFKC, case) ICU's. A fixed
 * point: the canonical email of a canonical email is itself, so a stored email is found by its own text. Nothing
 * is validated here: sign-in uses it as is (through signInEmail, which bounds the length).
 */
export function canonicalEmail(value: string): string {
  const typed = value.trim().normalize('NFKC');
  const at = typed.lastIndexOf('@');
  if (at < 0) return fold(typed);
  const labels = typed
    .slice(at + 1)
    .replace(IDEOGRAPHIC_FULL_STOP, '.')
    .split('.')
    .map((label) => fold(uts46Label(label)) || fold(label));
  return `${fold(typed.slice(0, at + 1))}${labels.join('.')}`;
}

/**
 * The canonical email (see canonicalEmail) that sign-in looks up, or null for one longer than
 * MAX_TYPED_EMAIL_LENGTH as typed: no user has it, and it is not canonicalized. Throws nothing.
 */
export function signInEmail(value: string): string | null {
  return value.length > MAX_TYPED_EMAIL_LENGTH ? null : canonicalEmail(value);
}

/**
 * Letters of the scripts whose letters look alike (Latin a, Cyrillic а, Greek α): one part of an address (the
 * local part, or one label of the domain) may use one of them only, as browsers refuse such domain labels.
 */
const CONFUSABLE_SCRIPTS = [/\p{Script=Latin}/u, /\p{Script=Cyrillic}/u, /\p{Script=Greek}/u];

function mixesConfusableScripts(part: string): boolean {
  return CONFUSABLE_SCRIPTS.filter((script) => script.test(part)).length > 1;
}

/**
 * The canonical email (see canonicalEmail) of a new or changed address, or BAD_USER_INPUT on `email`: one @, a
 * dot in the domain, no empty domain label, no domain label starting or ending with a hyphen (RFC 1035, 5321),
 * no xn-- label that is not punycode, no label UTS 46 or the URL Standard refuses, one confusable script per
 * part. Sign-in does not call it: a malformed email is an unknown one there.
 */
export function normalizeEmail(value: string): string {
  if (value.length > MAX_TYPED_EMAIL_LENGTH) {
    throw new BadInputError(`An email must be at most ${MAX_EMAIL_LENGTH} characters long.`, 'email');
  }
  refuseHiddenCharacters(value.trim(), { field: 'email', what: 'Email' });
  const email = canonicalEmail(value);
  // Again on the canonical form: an A-label may decode to a joiner (xn--11b2ezcs70k is क्\u200cष), which the
  // typed text did not show, and a stored email must pass this check when it is sent again.
  refuseHiddenCharacters(email, { field: 'email', what: 'Email' });
  if (email.length > MAX_EMAIL_LENGTH || !EMAIL.test(email)) {
    throw new BadInputError(`"${email.slice(0, 80)}" is not a valid email address.`, 'email');
  }
  const [localPart, domain] = email.split('@');
  const labels = domain.split('.');
  // "a@example.com." is the mailbox of "a@example.com" (the root's dot), "a@example..com" none at all.
  if (labels.some((label) => label === '')) {
    throw new BadInputError(
      'The domain of an email must not start or end with a dot, or have two dots in a row.',
      'email',
    );
  }
  // RFC 1035 (2.3.1) and RFC 5321 (4.1.2, Domain): a label starts and ends with a letter or digit. Checked on the
  // labels as typed too: an A-label ending with a hyphen (`xn--x-`) decodes to another label (`x`).
  const typed = value.trim().normalize('NFKC');
  const typedLabels = typed
    .slice(typed.lastIndexOf('@') + 1)
    .replace(IDEOGRAPHIC_FULL_STOP, '.')
    .split('.');
  if ([...labels, ...typedLabels].some((label) => label.startsWith('-') || label.endsWith('-'))) {
    throw new BadInputError('A label of the domain of an email must not start or end with a hyphen.', 'email');
  }
  // What canonicalEmail could not decode (or decoded to nothing) is the domain of no mailbox.
  if (labels.some((label) => A_LABEL.test(label))) {
    throw new BadInputError(
      'A label of the domain of an email that starts with xn-- must be valid punycode (IDNA).',
      'email',
    );
  }
  // What UTS 46 or the URL Standard refuses (a character UTS 46 disallows or does not know yet, a label against
  // the bidi or joiner rules, a leading combining mark, a forbidden domain code point such as % or #) is the
  // domain of no mailbox, and refusing it keeps stored labels in UTS 46's form, never merely folded.
  if (typedLabels.some((label) => uts46Label(label) === '')) {
    throw new BadInputError(
      'A label of the domain of an email must be a valid internationalized domain name label (UTS 46).',
      'email',
    );
  }
  if ([localPart, ...labels].some(mixesConfusableScripts)) {
    throw new BadInputError(
      'Each part of an email must use one of the Latin, Greek and Cyrillic scripts, not several (their letters look alike).',
      'email',
    );
  }
  return email;
}

/**
 * Refuses a new password that cannot be used (BAD_USER_INPUT on `field`), before anything hashes it: the rules of
 * newPasswordProblem, on its NFKC form (length in code points, MIN_PASSWORD_LENGTH to MAX_PASSWORD_LENGTH).
 * @throws BadInputError
 */
export function checkNewPassword(password: string, field: string): void {
  const problem = newPasswordProblem(password);
  if (problem) throw new BadInputError(problem, field);
}
