import { Arg, Field, Int, Mutation, ObjectType, Resolver } from 'type-graphql';

import { Organization } from '../organizations/organization.entity';
import { Can } from '../request/can';
import { type Actor, CurrentActor } from '../request/context';
import { type AccessKeyPolicyService, MAX_KEY_AGE_DAYS } from './key-policy.service';

@ObjectType({ simpleResolvers: true })
export class SetAccessKeyPolicyPayload {
  @Field(() => Organization, { description: 'The organization with its policy as now committed.' })
  organization: Organization;

  @Field(() => Int, {
    description:
      'Existing keys whose expiry changed, or whose running grace period was shortened (0 unless applyToExistingKeys).',
  })
  existingKeysUpdated: number;
}

/** Expiry by policy: the organization setting that gives keys an age limit. */
@Resolver()
export class AccessKeyPolicyResolver {
  constructor(private readonly policy: AccessKeyPolicyService) {}

  /** See AccessKeyPolicyService.set (errors thrown there). */
  @Can('setAccessKeyPolicy', 'Organization', {
    on: 'organization',
    message: 'Only admins of the organization can set its access key policy.',
  })
  @Mutation(() => SetAccessKeyPolicyPayload, {
    description:
      `Admins: keys of the organization expire maxKeyAgeDays (1 to ${MAX_KEY_AGE_DAYS}) after they are issued; null: never. ` +
      'Applies to keys issued from now on; with applyToExistingKeys also to existing keys, counted from their creation ' +
      '(a key already older expires at once; a key already expired stays expired). An expired key is refused like any invalid key. ' +
      'Audited as ACCESS_KEY_POLICY_CHANGED.',
  })
  setAccessKeyPolicy(
    @CurrentActor() actor: Actor,
    @Arg('maxKeyAgeDays', () => Int, { nullable: true }) maxKeyAgeDays: number | null,
    @Arg('applyToExistingKeys', () => Boolean, { nullable: true, defaultValue: false })
    applyToExistingKeys: boolean | null,
  ): Promise<SetAccessKeyPolicyPayload> {
    return this.policy.set(actor, {
      maxKeyAgeDays: maxKeyAgeDays ?? null,
      applyToExistingKeys: applyToExistingKeys ?? false,
    });
  }
}
