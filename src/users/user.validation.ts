import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../auth/password';
import { BadInputError } from '../errors';

export const MAX_NAME_LENGTH = 200;
const MAX_EMAIL_LENGTH = 254;
// Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is the mail server's call.
const EMAIL = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u;
/** Control characters (tabs, newlines, NUL...) have no place in a name shown in lists and audit trails. */
const CONTROL = /\p{Cc}/u;

export function containsControlCharacters(value: string): boolean {
  return CONTROL.test(value);
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function normalizeEmail(value: string): string {
  const email = value.trim();
  if (email.length > MAX_EMAIL_LENGTH || !EMAIL.test(email)) {
    throw new BadInputError(`"${email.slice(0, 80)}" is not a valid email address.`, 'email');
  }
  return email;
}

export function normalizeName(value: string): string {
  const name = value.trim();
  if (name.length === 0) throw new BadInputError('Name must not be empty.', 'name');
  if (containsControlCharacters(name)) throw new BadInputError('Name must not contain control characters (tabs, line breaks).', 'name');
  if (name.length > MAX_NAME_LENGTH) {
    throw new BadInputError(`Name must be at most ${MAX_NAME_LENGTH} characters.`, 'name');
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
