/**
 * PostgreSQL array literals written here instead of by pg, for the long arrays of uuids and integers a batch of
 * key views sends (INSERT_IF_CONFIRMED: a page's 100 targets, their organizations, their key rows). pg writes a
 * JavaScript array element by element, each converted, searched twice for characters to escape and quoted
 * (pg/lib/utils.js arrayString): about a third of a microsecond per element on the users page's path. The
 * elements here need no quoting (a uuid's hex digits and dashes, a decimal integer), so the literal is the
 * elements joined by commas in braces, which PostgreSQL parses as the same array (`$1::uuid[]`, `$1::int[]`).
 * Every element is checked first: a string that is not a uuid would otherwise change the array's elements.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `ids` (uuids in their text form, as PostgreSQL returns them) as one array literal, `{id,id,...}`, for a
 * `uuid[]` parameter. Empty: `{}`.
 * @throws Error when an element is not a uuid (a bug of the caller: ids come from uuid columns).
 */
export function uuidArrayLiteral(ids: readonly string[]): string {
  for (let i = 0; i < ids.length; i++) {
    // A run of the same id (a page's organization, 100 times) is checked once.
    if (i > 0 && ids[i] === ids[i - 1]) continue;
    if (!UUID.test(ids[i])) throw new Error(`uuidArrayLiteral: element ${i} is not a uuid`);
  }
  return `{${ids.join(',')}}`;
}

/**
 * `values` (safe integers) as one array literal, `{1,2,...}`, for an `int[]` or `bigint[]` parameter.
 * @throws Error when an element is not a safe integer.
 */
export function integerArrayLiteral(values: readonly number[]): string {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isSafeInteger(values[i])) throw new Error(`integerArrayLiteral: element ${i} is not an integer`);
  }
  return `{${values.join(',')}}`;
}
