import { auditActorOf, type AuditService } from '../audit/audit.service';
import { AuditAction } from '../audit/audit-event.entity';
import { BadInputError } from '../errors';
import type { Actor } from '../request/actor';
import type { User } from '../users/user.entity';
import type { UserService } from '../users/user.service';
import { type AccessKeyService, type IssuedKey, MAX_GRACE_PERIOD_SECONDS } from './access-key.service';

/**
 * Regenerating a user's key: a change of that user (UserService.change: authority confirmed in the
 * transaction, the user locked, NOT_FOUND/FORBIDDEN by the abilities' `regenerateAccessKey`), in which
 * AccessKeyService.issue replaces the key and the audit records the regeneration and, since the payload
 * reveals the new key, its view, in the same commit.
 */
export class AccessKeyRegeneration {
  constructor(
    private readonly deps: {
      users: Pick<UserService, 'change'>;
      accessKeys: Pick<AccessKeyService, 'issue'>;
      audit: Pick<AuditService, 'record'>;
    },
  ) {}

  /**
   * Issues `userId` a new key; the old one keeps working for `gracePeriodSeconds` (0 to 7 days, in seconds).
   * @throws BadInputError on a grace period out of range or a malformed id; NotFoundError, ForbiddenError or
   *   the act's refusal from UserService.change.
   */
  async regenerateAccessKey(
    actor: Actor,
    params: { userId: string; gracePeriodSeconds: number },
  ): Promise<{ user: User; key: IssuedKey }> {
    const { gracePeriodSeconds } = params;
    if (
      !Number.isInteger(gracePeriodSeconds) ||
      gracePeriodSeconds < 0 ||
      gracePeriodSeconds > MAX_GRACE_PERIOD_SECONDS
    ) {
      throw new BadInputError(
        `"gracePeriodSeconds" must be from 0 to ${MAX_GRACE_PERIOD_SECONDS} (7 days).`,
        'gracePeriodSeconds',
      );
    }
    return this.deps.users.change(
      actor,
      { id: params.userId, action: 'regenerateAccessKey' },
      async (manager, user) => {
        const key = await this.deps.accessKeys.issue(manager, {
          userId: user.id,
          organizationId: user.organizationId,
          createdBy: actor.principal.userId,
          gracePeriodSeconds,
        });
        // The payload reveals the new key, so its view is recorded with the regeneration, in the same commit.
        const target = { organizationId: user.organizationId, targetUserId: user.id };
        await this.deps.audit.record(
          manager,
          auditActorOf(actor),
          { action: AuditAction.ACCESS_KEY_REGENERATED, ...target },
          { action: AuditAction.ACCESS_KEY_VIEWED, ...target },
        );
        return { user, key };
      },
    );
  }
}
