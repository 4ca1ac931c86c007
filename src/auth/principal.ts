import { User, type Role } from '../users/user.entity';

/** How the caller proved who they are: an integration's access key, or a person's session. */
export type PrincipalKind = 'ACCESS_KEY' | 'SESSION';

/** The authenticated caller of one request: what abilities and audit need to know, nothing more. */
export interface Principal {
  readonly kind: PrincipalKind;
  readonly userId: string;
  readonly organizationId: string;
  readonly role: Role;
  /** Set for people who signed in: what logout ends. */
  readonly sessionId?: string;
  /** The caller's profile as of authentication (frozen): `me` answers from it without a query. */
  readonly user: Readonly<User>;
}

/** What a credential lookup yields: the principal and until when it may be cached (grace or session end). */
export interface Authenticated {
  readonly principal: Principal;
  readonly validUntil: Date | null;
}

/** The user columns every credential lookup selects, for `principalUser`. */
export const PRINCIPAL_USER_COLUMNS =
  'u.id, u.organization_id, u.email, u.name, u.role, u.is_active, u.created_at, u.updated_at';

export interface PrincipalUserRow {
  id: string;
  organization_id: string;
  email: string;
  name: string;
  role: Role;
  is_active: boolean;
  created_at: Date;
  updated_at: Date;
}

/** Builds the principal of a credential lookup row; the profile is frozen because caches share it. */
export function principalFrom(row: PrincipalUserRow, params: { kind: PrincipalKind; sessionId?: string }): Principal {
  const user = Object.freeze(
    Object.assign(new User(), {
      id: row.id,
      organizationId: row.organization_id,
      email: row.email,
      name: row.name,
      role: row.role,
      isActive: row.is_active,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    }),
  );
  return { kind: params.kind, sessionId: params.sessionId, userId: row.id, organizationId: row.organization_id, role: row.role, user };
}
