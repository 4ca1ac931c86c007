import { subject } from '@casl/ability';
import type { DataSource } from 'typeorm';

import { auditActorOf, type AuditService } from '../audit/audit.service';
import { AuditAction } from '../audit/audit-event.entity';
import type { AuthCache } from '../authentication/auth-cache';
import type { Authority } from '../authorization/authority';
import { BadInputError, ForbiddenError } from '../errors';
import { Organization } from '../organizations/organization.entity';
import type { Actor } from '../request/context';
import { type Clock, expiryMs, serviceClockAtRow, systemClock } from './clock';

/** The longest maxKeyAgeDays accepted (ten years); the migration's CHECK holds the same bound. */
export const MAX_KEY_AGE_DAYS = 3650;
/**
 * The service's clock as the statement reads a key row (serviceClockAtRow of $3): a key that expired while the
 * statement waited for key rows other transactions hold (a secret rotation takes them FOR UPDATE) must not count
 * as running and be given the policy's later expiry (test/access-keys/policy-expired-while-waiting.test.ts).
 */
const SERVICE_CLOCK_AT_ROW = serviceClockAtRow('$3');
/**
 * An existing key's expiry under a policy of $2 days: from its creation, in whole milliseconds (see expiryMs).
 * A key already expired by the service's clock (SERVICE_CLOCK_AT_ROW) keeps the expiry it had: a policy, even a
 * longer one or none, never brings back a key that stopped working (as a regeneration's grace period does not:
 * issue's GRACED).
 */
const APPLIED_EXPIRY = `CASE WHEN ${expiryMs('expires_at')} <= ${SERVICE_CLOCK_AT_ROW} THEN expires_at
  ELSE ${expiryMs('created_at + make_interval(days => $2::int)')} END`;
/**
 * The end of the grace period of the key it keeps working, under the policy: never later than it was, counted
 * from that key's own creation (`previous_key_created_at`), never from the creation of the key that replaced
 * it. One replaced before that column existed has no known age: taken as older than any, its grace period
 * ends now. Unchanged without a policy ($2 null: keys never expire), where there is no grace period, and where
 * it has already ended (PostgreSQL's clock as the row is read, clock_timestamp(): not the transaction's start,
 * before its waits): its end is a fact, not a setting.
 */
const CAPPED_PREVIOUS_EXPIRY = `CASE WHEN previous_key_expires_at IS NULL OR $2::int IS NULL OR previous_key_expires_at <= clock_timestamp()
  THEN previous_key_expires_at
  ELSE LEAST(previous_key_expires_at, COALESCE(${expiryMs('previous_key_created_at + make_interval(days => $2::int)')},
                                               ${expiryMs('now()')})) END`;
/**
 * The replaced key's own expiry under the policy, decided by the service's clock as a current key's is (see
 * PreviousKeyOwnExpiry): never later than it was, its age counted from its own creation. Unchanged without a
 * policy, where no grace period runs (none, or ended: as CAPPED_PREVIOUS_EXPIRY), or when that key's creation
 * is unknown (CAPPED_PREVIOUS_EXPIRY ends its grace period now then).
 */
const CAPPED_PREVIOUS_OWN_EXPIRY = `CASE WHEN previous_key_expires_at IS NULL OR $2::int IS NULL OR previous_key_expires_at <= clock_timestamp()
  THEN previous_key_own_expires_at
  ELSE LEAST(previous_key_own_expires_at, ${expiryMs('previous_key_created_at + make_interval(days => $2::int)')}) END`;
/** A key row the policy changes: its key's expiry, or the end (or own expiry) of its replaced key's running grace period. */
const POLICY_CHANGES = `(expires_at IS DISTINCT FROM ${APPLIED_EXPIRY}
  OR previous_key_expires_at IS DISTINCT FROM ${CAPPED_PREVIOUS_EXPIRY}
  OR previous_key_own_expires_at IS DISTINCT FROM ${CAPPED_PREVIOUS_OWN_EXPIRY})`;

export interface AccessKeyPolicyChange {
  /** Days from issue until a key expires; null: keys never expire. */
  maxKeyAgeDays: number | null;
  /** Also give the organization's existing keys an expiry of `created_at + maxKeyAgeDays` (or none, for null). */
  applyToExistingKeys: boolean;
}

/** An organization's key expiry policy: who may set it, its bounds, and what it does to existing keys. */
export class AccessKeyPolicyService {
  constructor(
    private readonly deps: {
      dataSource: DataSource;
      audit: AuditService;
      authCache: AuthCache;
      authority: Authority;
      /** Decides which existing keys have already expired (see APPLIED_EXPIRY); the system clock by default. */
      clock?: Clock;
    },
  ) {}

  /**
   * Sets the caller's organization's `maxKeyAgeDays` (ADMIN only), records ACCESS_KEY_POLICY_CHANGED, and
   * with `applyToExistingKeys` rewrites the `expires_at` of every key of the organization that has not expired
   * from its `created_at` (a key already older than the new age expires at once; an expired key stays expired),
   * and ends a running grace period of a replaced key older than that, counted from its own creation. Without it existing keys keep the expiry they
   * were issued with; keys issued from now on get the new one. One transaction; the organization row is
   * locked FOR UPDATE first (Act.organizationLock): two admins setting it at once serialize, every act,
   * sign-in and reveal of the organization under way commits first (with the key it carries, or issues, as it
   * was), and every later one waits for the commit and is checked against the new expiries. Throws BAD_USER_INPUT for a
   * value outside 1..MAX_KEY_AGE_DAYS, FORBIDDEN for a non-admin, UNAUTHENTICATED when the caller's authority
   * ended. Returns the organization as committed and how many existing keys got a new expiry.
   */
  async set(
    actor: Actor,
    change: AccessKeyPolicyChange,
  ): Promise<{ organization: Organization; existingKeysUpdated: number }> {
    const { maxKeyAgeDays, applyToExistingKeys } = change;
    const { organizationId } = actor.principal;
    const may = (ability: Actor['ability']) => {
      if (!ability.can('setAccessKeyPolicy', subject('Organization', { id: organizationId, organizationId }))) {
        throw new ForbiddenError('Only admins of the organization can set its access key policy.');
      }
    };
    // Refused before any work, then again against the caller as committed at the moment of the act.
    may(actor.ability);
    if (
      maxKeyAgeDays !== null &&
      (!Number.isInteger(maxKeyAgeDays) || maxKeyAgeDays < 1 || maxKeyAgeDays > MAX_KEY_AGE_DAYS)
    ) {
      throw new BadInputError(
        `"maxKeyAgeDays" must be from 1 to ${MAX_KEY_AGE_DAYS}, or null for keys that never expire.`,
        'maxKeyAgeDays',
      );
    }
    this.deps.authority.throwIfRefused(actor);
    const result = await this.deps.dataSource.transaction(async (manager) => {
      // FOR UPDATE: acts in flight may carry a key this expires, or be issuing one under the old policy.
      (await this.deps.authority.confirm(manager, { actor, organizationLock: 'FOR UPDATE' })).authorize(may);
      const [rows] = await manager.query(
        `UPDATE organizations SET max_key_age_days = $2 WHERE id = $1
         RETURNING id, name, is_active, created_at, max_key_age_days`,
        [organizationId, maxKeyAgeDays],
      );
      let existingKeysUpdated = 0;
      if (applyToExistingKeys) {
        // The table lock the statement below takes anyway, taken first: the service's clock ($3) is read after
        // its wait (a migration's, an operator's LOCK TABLE). Parsed and bound, the statement would take it
        // before its execution's statement_timestamp(), which SERVICE_CLOCK_AT_ROW counts from: a key that
        // expired during that wait was given the policy's later expiry (policy-expired-table-lock-wait.test.ts).
        await manager.query('LOCK TABLE access_keys IN ROW EXCLUSIVE MODE');
        // Rows locked by user id first, the order of every other writer of several key rows (leak reports,
        // the batched write of key uses): locking them in scan order deadlocked with that write.
        const [, count] = await manager.query(
          `WITH due AS MATERIALIZED (
             SELECT user_id FROM access_keys
              WHERE organization_id = $1 AND ${POLICY_CHANGES}
              ORDER BY user_id FOR NO KEY UPDATE
           )
           UPDATE access_keys SET expires_at = ${APPLIED_EXPIRY}, previous_key_expires_at = ${CAPPED_PREVIOUS_EXPIRY},
                  previous_key_own_expires_at = ${CAPPED_PREVIOUS_OWN_EXPIRY}
             FROM due
            WHERE access_keys.user_id = due.user_id AND ${POLICY_CHANGES}`,
          [organizationId, maxKeyAgeDays, new Date((this.deps.clock ?? systemClock).now())],
        );
        existingKeysUpdated = count as number;
      }
      await this.deps.audit.record(manager, auditActorOf(actor), {
        action: AuditAction.ACCESS_KEY_POLICY_CHANGED,
        organizationId,
      });
      const row = (
        rows as Array<{
          id: string;
          name: string;
          is_active: boolean;
          created_at: Date;
          max_key_age_days: number | null;
        }>
      )[0];
      const organization = Object.assign(new Organization(), {
        id: row.id,
        name: row.name,
        isActive: row.is_active,
        createdAt: row.created_at,
        maxKeyAgeDays: row.max_key_age_days,
      });
      return { organization, existingKeysUpdated };
    });
    // Committed: cached principals carry their key's expiry; this instance forgets them now, the others on NOTIFY.
    this.deps.authCache.evictOrganization(organizationId);
    return result;
  }
}
