import type { Role, User } from '../users/user.entity';
import { userFromRow, type UserRow } from '../users/user.queries';

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
  /**
   * Set when the user's current key authenticated (not the key it replaced, during a grace period): the key's
   * lookup digest, base64, which its uses are recorded against.
   */
  readonly currentKeyDigest?: string;
  /**
   * Set when the key a grace period keeps working authenticated: its lookup digest, base64, which its uses
   * are recorded against (`previousKeyLastUsedAt`, never the new key's `lastUsedAt`).
   */
  readonly previousKeyDigest?: string;
  /**
   * Set for access keys: the lookup digests of the key that authenticated (the current one or the one it
   * replaced, in its grace period) under every secret of the keyring, current first. Writes and reveals check
   * at the moment of the act that the row still holds one of them: `rotate-secret` may have re-digested the
   * same key under the new secret since the request authenticated, and that is not a replacement.
   */
  readonly keyDigests?: readonly Buffer[];
  /**
   * Set for a current key that expires (its organization's maxKeyAgeDays): when, in ms since the epoch. The
   * authenticator compares it with the injected clock on every cached use, so expiry needs no lookup.
   */
  readonly keyExpiresAtMs?: number;
  /** The caller's profile as of authentication (frozen): `me` answers from it without a query. */
  readonly user: Readonly<User>;
}

/**
 * What a credential lookup yields: the principal and how much longer it may be cached (the end of a grace
 * period or a session), measured by the database's clock so a skewed application clock cannot stretch it.
 */
export interface Authenticated {
  readonly principal: Principal;
  readonly validForMs: number | null;
}

/** Builds the principal of a credential lookup row; the profile is frozen because caches share it. */
export function principalFrom(
  row: UserRow,
  params: {
    kind: PrincipalKind;
    sessionId?: string;
    currentKeyDigest?: string;
    previousKeyDigest?: string;
    keyDigests?: readonly Buffer[];
    keyExpiresAtMs?: number;
  },
): Principal {
  const user = Object.freeze(userFromRow(row));
  const { kind, sessionId, currentKeyDigest, previousKeyDigest, keyDigests, keyExpiresAtMs } = params;
  return {
    kind,
    sessionId,
    currentKeyDigest,
    previousKeyDigest,
    keyDigests,
    keyExpiresAtMs,
    userId: row.id,
    organizationId: row.organization_id,
    role: row.role,
    user,
  };
}
