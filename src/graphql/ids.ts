import { BadInputError } from '../errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An id argument as the service stores it (a UUID, lower-cased), shared by every feature that takes ids.
 * @throws BadInputError (BAD_USER_INPUT on `field`) when `value` is not a UUID.
 */
export function parseId(value: string, field = 'id'): string {
  if (!UUID.test(value)) throw new BadInputError(`${field} must be a user id (a UUID).`, field);
  return value.toLowerCase();
}
