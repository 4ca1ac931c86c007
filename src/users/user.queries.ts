import { type Role, User } from './user.entity';

/** The columns of a user every read selects; `userFromRow` turns a row of them into the entity. */
export const USER_COLUMNS = 'u.id, u.organization_id, u.email, u.name, u.role, u.is_active, u.created_at, u.updated_at';

/** Rule fields (see abilities.ts) to columns of `users u`. */
export const USER_SCOPE_COLUMNS = { id: 'u.id', organizationId: 'u.organization_id' } as const;

export interface UserRow {
  id: string;
  organization_id: string;
  email: string;
  name: string;
  role: Role;
  is_active: boolean;
  created_at: Date;
  updated_at: Date;
}

/**
 * The columns a page of users reads when its nodes ask for no more than `id`, `email`, `name`, `organization`
 * and the key fields (see UserService.list): the ones the page's order, cursors, scope and key views need. Its
 * users leave `role`, `isActive`, `createdAt` and `updatedAt` unset.
 */
export const PAGE_SLIM_USER_COLUMNS = 'u.id, u.organization_id, u.email, u.name';

/** The User fields a slim page (PAGE_SLIM_USER_COLUMNS) can answer; any other field reads every column. */
const SLIM_PAGE_FIELDS: ReadonlySet<string> = new Set([
  '__typename',
  'id',
  'email',
  'name',
  'organization',
  'accessKey',
  'accessKeyInfo',
]);

/**
 * What a page of users reads for the User fields its nodes select (names, see selectedFieldNames):
 * `allColumns` false when PAGE_SLIM_USER_COLUMNS answer them all; `keys` 'row' when `accessKeyInfo` is asked
 * (the whole key row), 'ciphertext' when only `accessKey` is (what a reveal decrypts), else 'none';
 * `revealKeys` when `accessKey` is asked (UserService.list reveals the page's keys with it).
 */
export interface PageColumns {
  allColumns: boolean;
  keys: 'none' | 'ciphertext' | 'row';
  revealKeys: boolean;
}

/** Every column and the whole key row: what a page reads when the caller does not say what it needs. */
export const ALL_PAGE_COLUMNS: PageColumns = { allColumns: true, keys: 'row', revealKeys: false };

/** PageColumns for the User fields a page's nodes select. An unknown field reads every user column. */
export function pageColumnsFor(fields: ReadonlySet<string>): PageColumns {
  let allColumns = false;
  for (const field of fields) if (!SLIM_PAGE_FIELDS.has(field)) allColumns = true;
  const revealKeys = fields.has('accessKey');
  const keys = fields.has('accessKeyInfo') ? 'row' : revealKeys ? 'ciphertext' : 'none';
  return { allColumns, keys, revealKeys };
}

/** A row of PAGE_SLIM_USER_COLUMNS read as an array (runForArrays), then whatever columns follow them. */
export type SlimUserArray = [id: string, organizationId: string, email: string, name: string, ...rest: unknown[]];

/**
 * The User entity of a row read as an array whose first columns are PAGE_SLIM_USER_COLUMNS, in their order
 * (the other fields undefined, as for a slim row through userFromRow).
 */
export function userFromSlimArray(row: SlimUserArray): User {
  const user = new User();
  user.id = row[0];
  user.organizationId = row[1];
  user.email = row[2];
  user.name = row[3];
  // Set as userFromRow sets them for a slim row: one shape of User on the page's path.
  user.role = undefined as unknown as Role;
  user.isActive = undefined as unknown as boolean;
  user.createdAt = undefined as unknown as Date;
  user.updatedAt = undefined as unknown as Date;
  return user;
}

/**
 * The User entity of a `users` row read with USER_COLUMNS (snake_case columns to fields; no password hash),
 * or with PAGE_SLIM_USER_COLUMNS (the other fields left unset).
 */
export function userFromRow(row: UserRow): User {
  const user = new User();
  user.id = row.id;
  user.organizationId = row.organization_id;
  user.email = row.email;
  user.name = row.name;
  user.role = row.role;
  user.isActive = row.is_active;
  user.createdAt = row.created_at;
  user.updatedAt = row.updated_at;
  return user;
}
