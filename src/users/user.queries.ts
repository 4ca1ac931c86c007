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

/** The User entity of a `users` row read with USER_COLUMNS (snake_case columns to fields; no password hash). */
export function userFromRow(row: UserRow): User {
  return Object.assign(new User(), {
    id: row.id,
    organizationId: row.organization_id,
    email: row.email,
    name: row.name,
    role: row.role,
    isActive: row.is_active,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });
}
