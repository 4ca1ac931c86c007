import { BadInputError } from '../errors';

/** The longest display name (user or organization), in UTF-16 code units after trimming and NFC. */
export const MAX_NAME_LENGTH = 200;
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
/**
 * Format characters (Cf: those Default_Ignorable leaves out, such as the Arabic number signs), private-use
 * (Co) and unassigned (Cn) code points, and the line and paragraph separators (Zl, Zp): they show nothing
 * reliable, or break the line of a list or a log, so two texts that differ by them look the same.
 */
const UNSHOWABLE = /[\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;
/** With the u flag a surrogate only matches when it is unpaired: text PostgreSQL would store as U+FFFD. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/** Every character refuseHiddenCharacters refuses: controls (NUL included), invisible ones, unpaired surrogates. */
const HIDDEN = /[\p{Cc}\p{Default_Ignorable_Code_Point}\p{Cs}]/gu;

/**
 * Text taken as it came from someone who cannot be asked again (a signed message): each character that
 * refuseHiddenCharacters would refuse becomes U+FFFD, visibly, so the text can be stored (PostgreSQL text
 * holds no NUL) and shown without hiding or reordering what is around it.
 */
export function replaceHiddenCharacters(value: string): string {
  return value.replace(HIDDEN, '\ufffd');
}

/** True when `value` has a control character (Unicode Cc: tab, newline, NUL...). */
export function containsControlCharacters(value: string): boolean {
  return CONTROL.test(value);
}

/** True when `value` has a lone UTF-16 surrogate, which PostgreSQL would store as U+FFFD. */
export function hasUnpairedSurrogate(value: string): boolean {
  return UNPAIRED_SURROGATE.test(value);
}

/**
 * A names-and-emails check shared by both: refuses unpaired surrogates, control characters and invisible
 * or bidirectional-control characters, each as BAD_USER_INPUT on `field`.
 */
export function refuseHiddenCharacters(value: string, where: { field: string; what: string }): void {
  const { field, what } = where;
  if (hasUnpairedSurrogate(value))
    throw new BadInputError(`${what} contains an unpaired surrogate (invalid UTF-16).`, field);
  if (containsControlCharacters(value))
    throw new BadInputError(`${what} must not contain control characters (tabs, line breaks).`, field);
  if (INVISIBLE.test(value) || UNSHOWABLE.test(value)) {
    throw new BadInputError(
      `${what} must not contain invisible, unassigned, private-use, line-separator or text-direction characters (zero-width spaces and joiners, soft hyphens, direction marks or overrides).`,
      field,
    );
  }
}

/**
 * A display name as stored: trimmed and NFC (how it looks is kept; compatibility forms are not folded), with
 * something visible, no hidden characters, at most MAX_NAME_LENGTH. Organization names follow the same rules.
 */
export function normalizeName(value: string, what = 'Name'): string {
  const name = value.trim().normalize('NFC');
  if (name.length === 0) throw new BadInputError(`${what} must not be empty.`, 'name');
  refuseHiddenCharacters(name, { field: 'name', what });
  if (!VISIBLE.test(name))
    throw new BadInputError(`${what} must contain a visible character (a letter, digit or symbol).`, 'name');
  if (name.length > MAX_NAME_LENGTH) {
    throw new BadInputError(`${what} must be at most ${MAX_NAME_LENGTH} characters.`, 'name');
  }
  return name;
}
