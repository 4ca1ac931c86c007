import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../authentication/password';
import { BadInputError } from '../errors';

export const MAX_NAME_LENGTH = 200;
const MAX_EMAIL_LENGTH = 254;
// Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is the mail server's call.
const EMAIL = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u;
/** Control characters (tabs, newlines, NUL...) have no place in a name shown in lists and audit trails. */
const CONTROL = /\p{Cc}/u;
/**
 * Characters that show nothing or reorder the text around them, so that two different strings look the
 * same: Unicode's Default_Ignorable_Code_Point (zero-width space, non-joiner and joiner, word joiner, BOM,
 * soft hyphen, the bidirectional marks, embeddings, overrides and isolates, U+061C, fillers, variation selectors).
 */
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
/** A name must show something: a letter, digit, punctuation or symbol (the braille blank shows nothing). */
const VISIBLE = /(?!\u2800)[\p{L}\p{N}\p{P}\p{S}]/u;
/** With the u flag a surrogate only matches when it is unpaired: text PostgreSQL would store as U+FFFD. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function containsControlCharacters(value: string): boolean {
  return CONTROL.test(value);
}

export function hasUnpairedSurrogate(value: string): boolean {
  return UNPAIRED_SURROGATE.test(value);
}

/**
 * The form every email is stored and looked up in: trimmed, NFKC, lower-cased (full Unicode, not
 * PostgreSQL's collation-dependent lower()). NFKC rather than NFC because an email is an identifier (the
 * sign-in name): fullwidth letters, ligatures and other compatibility forms fold into the letters they look
 * like, as PRECIS (RFC 8265) maps widths for usernames. Nothing is validated here: sign-in uses it as is.
 */
export function canonicalEmail(value: string): string {
  return value.trim().normalize('NFKC').toLowerCase().normalize('NFKC');
}

/**
 * A names-and-emails check shared by both: refuses unpaired surrogates, control characters and invisible
 * or bidirectional-control characters, each as BAD_USER_INPUT on `field`.
 */
function refuseHiddenCharacters(value: string, where: { field: string; what: string }): void {
  const { field, what } = where;
  if (hasUnpairedSurrogate(value)) throw new BadInputError(`${what} contains an unpaired surrogate (invalid UTF-16).`, field);
  if (containsControlCharacters(value)) throw new BadInputError(`${what} must not contain control characters (tabs, line breaks).`, field);
  if (INVISIBLE.test(value)) {
    throw new BadInputError(
      `${what} must not contain invisible or text-direction characters (zero-width spaces and joiners, soft hyphens, direction marks or overrides).`,
      field,
    );
  }
}

/** The canonical email (see canonicalEmail), or BAD_USER_INPUT on `email`. */
export function normalizeEmail(value: string): string {
  refuseHiddenCharacters(value.trim(), { field: 'email', what: 'Email' });
  const email = canonicalEmail(value);
  if (email.length > MAX_EMAIL_LENGTH || !EMAIL.test(email)) {
    throw new BadInputError(`"${email.slice(0, 80)}" is not a valid email address.`, 'email');
  }
  return email;
}

/**
 * A display name as stored: trimmed and NFC (how it looks is kept; compatibility forms are not folded), with
 * something visible, no hidden characters, at most MAX_NAME_LENGTH. Organization names follow the same rules.
 */
export function normalizeName(value: string, what = 'Name'): string {
  const name = value.trim().normalize('NFC');
  if (name.length === 0) throw new BadInputError(`${what} must not be empty.`, 'name');
  refuseHiddenCharacters(name, { field: 'name', what });
  if (!VISIBLE.test(name)) throw new BadInputError(`${what} must contain a visible character (a letter, digit or symbol).`, 'name');
  if (name.length > MAX_NAME_LENGTH) {
    throw new BadInputError(`${what} must be at most ${MAX_NAME_LENGTH} characters.`, 'name');
  }
  return name;
}

export function parseId(value: string, field = 'id'): string {
  if (!UUID.test(value)) throw new BadInputError(`${field} must be a user id (a UUID).`, field);
  return value.toLowerCase();
}

/** Refuses a new password of the wrong length (BAD_USER_INPUT on `field`), before anything hashes it. */
export function checkPasswordLength(password: string, field: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new BadInputError(`Password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long.`, field);
  }
}
