import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../authentication/password';
import { BadInputError } from '../errors';
import { refuseHiddenCharacters } from '../graphql/text-checks';

const MAX_EMAIL_LENGTH = 254;
// Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is the mail server's call.
const EMAIL = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u;

/**
 * The form every email is stored and looked up in: trimmed, NFKC, lower-cased (full Unicode, not
 * PostgreSQL's collation-dependent lower()). NFKC rather than NFC because an email is an identifier (the
 * sign-in name): fullwidth letters, ligatures and other compatibility forms fold into the letters they look
 * like, as PRECIS (RFC 8265) maps widths for usernames. Nothing is validated here: sign-in uses it as is.
 */
export function canonicalEmail(value: string): string {
  return value.trim().normalize('NFKC').toLowerCase().normalize('NFKC');
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

/** Refuses a new password of the wrong length (BAD_USER_INPUT on `field`), before anything hashes it. */
export function checkPasswordLength(password: string, field: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new BadInputError(
      `Password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long.`,
      field,
    );
  }
}
