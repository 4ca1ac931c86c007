import type { Role } from '../users/user.entity';

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
}
