import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Resolver, Root } from 'type-graphql';
import { CurrentActor, type Actor, type RequestContext } from '../request/context';
import { ForbiddenError } from '../errors';
import type { Metrics } from '../metrics';
import { User } from '../users/user.entity';
import type { AccessKeyRegeneration } from './access-key-regeneration';
import type { AccessKeyService } from './access-key.service';
import { AccessKeyInfo, RegenerateAccessKeyPayload } from './access-key.types';
import type { LeakReportSource } from './leak-report.types';

/** The only way key material leaves the service: two guarded fields and the regenerate payload. */
@Resolver(() => User)
export class AccessKeyResolver {
  constructor(private readonly deps: { accessKeyRegeneration: AccessKeyRegeneration; accessKeys: AccessKeyService; metrics: Metrics }) {}

  private checkKeyAccess(user: User, actor: Actor): void {
    if (!actor.ability.can('read', user, 'accessKey')) {
      throw new ForbiddenError('Only admins of the organization can see access keys.');
    }
  }

  @FieldResolver(() => String, {
    nullable: true,
    description: 'Admins of the same organization only. Null when the user has no key yet (Edit, then Save creates one).',
  })
  accessKey(@Root() user: User, @CurrentActor() actor: Actor, @Ctx() ctx: RequestContext): Promise<string | null> {
    this.checkKeyAccess(user, actor);
    // A page's keys are decrypted together and their views committed in one insert before any is returned.
    return ctx.loaders.revealedKey.load(user);
  }

  @FieldResolver(() => AccessKeyInfo, { nullable: true, description: 'Admins of the same organization only.' })
  async accessKeyInfo(
    @Root() user: User,
    @CurrentActor() actor: Actor,
    @Ctx() ctx: RequestContext,
  ): Promise<AccessKeyInfo | null> {
    this.checkKeyAccess(user, actor);
    const row = await ctx.loaders.accessKey.load(user.id);
    if (!row) return null;
    return {
      hint: row.keyHint,
      createdAt: row.createdAt,
      lastUsedAt: row.lastUsedAt,
      previousKeyExpiresAt: row.previousKeyExpiresAt,
      // Only while the previous key works: after the grace period it is history, not hand-over.
      previousKeyLastUsedAt: row.previousKeyExpiresAt && row.previousKeyExpiresAt > new Date() ? row.previousKeyLastUsedAt : null,
      leakReportedAt: row.leakReportedAt,
      leakReportLocation: row.leakReportLocation,
      leakReportSource: row.leakReportSource as LeakReportSource | null,
      leakedKeyHint: row.leakedKeyHint,
      expiresAt: row.expiresAt,
    };
  }

  @Mutation(() => RegenerateAccessKeyPayload, {
    description: 'Replaces the key. The old one stops working at once, or after gracePeriodSeconds (at most 7 days).',
  })
  async regenerateAccessKey(
    @CurrentActor() actor: Actor,
    @Ctx() ctx: RequestContext,
    @Arg('userId', () => ID) userId: string,
    @Arg('gracePeriodSeconds', () => Int, { nullable: true, defaultValue: 0 }) gracePeriodSeconds: number | null,
  ): Promise<RegenerateAccessKeyPayload> {
    const { user, key } = await this.deps.accessKeyRegeneration.regenerateAccessKey(actor, {
      userId,
      gracePeriodSeconds: gracePeriodSeconds ?? 0,
    });
    this.deps.metrics.countKeyRegeneration();
    // Later reads in this request show exactly the key this regeneration issued (not one another admin may
    // have issued since), whose view was recorded with the regeneration: reading it again is the same view,
    // as for any key read twice in a request.
    ctx.loaders.accessKey.clear(user.id).prime(user.id, key.row);
    ctx.loaders.revealedKey.clear(user).prime(user, key.key);
    return { user, accessKey: key.key, previousKeyExpiresAt: key.row.previousKeyExpiresAt };
  }
}
