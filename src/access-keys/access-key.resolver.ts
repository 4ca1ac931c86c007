import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Resolver, Root } from 'type-graphql';

import { ResolvedBy } from '../graphql/direct-resolver';
import type { Metrics } from '../metrics';
import { Can } from '../request/can';
import { type Actor, CurrentActor, type RequestContext } from '../request/context';
import { User } from '../users/user.entity';
import type { AccessKeyService } from './access-key.service';
import { AccessKeyInfo, RegenerateAccessKeyPayload } from './access-key.types';
import type { AccessKeyRegeneration } from './access-key-regeneration';
import type { LeakReportSource } from './leak-report.types';

const KEY_FIELDS_REFUSAL = 'Only admins of the organization can see access keys.';

/**
 * `User.accessKey` (AccessKeyResolver.accessKey, resolved directly: ResolvedBy): a page's keys are decrypted
 * together and their views committed in one insert before any is returned; a page that revealed them with its
 * rows (UserService.list) answers at once, any other user's key goes through the request's revealedKey loader.
 */
function accessKeyOf(user: User, ctx: RequestContext): string | null | Promise<string | null> {
  const revealed = ctx.loaders.revealedKeyOf(user);
  return revealed !== undefined ? revealed : ctx.loaders.revealedKey.load(user);
}

/** The only way key material leaves the service: two guarded fields and the regenerate payload. */
@Resolver(() => User)
export class AccessKeyResolver {
  constructor(
    private readonly deps: {
      accessKeyRegeneration: AccessKeyRegeneration;
      accessKeys: AccessKeyService;
      metrics: Metrics;
    },
  ) {}

  /**
   * The user's key, decrypted and recorded as ACCESS_KEY_VIEWED before it is returned (the request's
   * revealedKey loader: a page's keys together); the view's batch re-confirms the caller's authority
   * (KeyViewWriter). Null when the user has no key.
   * @throws ForbiddenError (not granted, or the caller's role changed), UnauthenticatedError (authority ended).
   */
  @Can('read', 'User', { field: 'accessKey', on: 'parent', message: KEY_FIELDS_REFUSAL })
  @ResolvedBy(accessKeyOf)
  @FieldResolver(() => String, {
    nullable: true,
    description:
      'Admins of the same organization only. Null when the user has no key yet (Edit, then Save creates one).',
  })
  accessKey(@Root() user: User, @Ctx() ctx: RequestContext): string | null | Promise<string | null> {
    return accessKeyOf(user, ctx);
  }

  /** What can be shown of the user's key without revealing it; null when the user has no key. */
  @Can('read', 'User', { field: 'accessKeyInfo', on: 'parent', message: KEY_FIELDS_REFUSAL })
  @FieldResolver(() => AccessKeyInfo, { nullable: true, description: 'Admins of the same organization only.' })
  async accessKeyInfo(@Root() user: User, @Ctx() ctx: RequestContext): Promise<AccessKeyInfo | null> {
    const row = await ctx.loaders.accessKey.load(user.id);
    if (!row) return null;
    return {
      hint: row.keyHint,
      createdAt: row.createdAt,
      lastUsedAt: row.lastUsedAt,
      previousKeyExpiresAt: row.previousKeyExpiresAt,
      // Only while the previous key works: after the grace period it is history, not hand-over.
      previousKeyLastUsedAt:
        row.previousKeyExpiresAt && row.previousKeyExpiresAt > new Date() ? row.previousKeyLastUsedAt : null,
      leakReportedAt: row.leakReportedAt,
      leakReportLocation: row.leakReportLocation,
      leakReportSource: row.leakReportSource as LeakReportSource | null,
      leakedKeyHint: row.leakedKeyHint,
      expiresAt: row.expiresAt,
    };
  }

  /**
   * See AccessKeyRegeneration.regenerateAccessKey (errors thrown there); the request's later reads show the
   * key issued here.
   */
  @Can('regenerateAccessKey', 'User', { on: { arg: 'userId' } })
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
    ctx.loaders.keyIssued(user, key);
    return { user, accessKey: key.key, previousKeyExpiresAt: key.row.previousKeyExpiresAt };
  }
}
