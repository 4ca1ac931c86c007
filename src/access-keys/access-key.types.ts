import { Field, ObjectType } from 'type-graphql';

import { User } from '../users/user.entity';
import { LeakReportSource } from './leak-report.types';

@ObjectType({ description: 'What can be shown about a key without revealing it.', simpleResolvers: true })
export class AccessKeyInfo {
  @Field({ description: 'Prefix and last four characters.' })
  hint: string;

  @Field()
  createdAt: Date;

  @Field(() => Date, {
    nullable: true,
    description: 'When the current key was last used (not the key it replaced); updated at most once a minute.',
  })
  lastUsedAt: Date | null;

  @Field(() => Date, { nullable: true, description: 'Until then the replaced key still works.' })
  previousKeyExpiresAt: Date | null;

  @Field(() => Date, {
    nullable: true,
    description:
      'During a grace period: when the replaced key was last used (its last use as the current key until it is used again); ' +
      'updated at most once a minute. Null outside a grace period.',
  })
  previousKeyLastUsedAt: Date | null;

  @Field(() => Date, {
    nullable: true,
    description:
      "When one of this user's keys was last reported leaked (and revoked at once); kept after later regenerations.",
  })
  leakReportedAt: Date | null;

  @Field(() => String, {
    nullable: true,
    description: 'Where the reported key was found, as the report gave it (a URL, a place).',
  })
  leakReportLocation: string | null;

  @Field(() => LeakReportSource, { nullable: true, description: 'Who reported the leak.' })
  leakReportSource: LeakReportSource | null;

  @Field(() => String, { nullable: true, description: 'Prefix and last four characters of the key that was reported.' })
  leakedKeyHint: string | null;

  @Field(() => Date, {
    nullable: true,
    description:
      "When the current key stops working, from the organization's maxKeyAgeDays; null: never. Past it the key is refused like any invalid key.",
  })
  expiresAt: Date | null;
}

@ObjectType({ simpleResolvers: true })
export class RegenerateAccessKeyPayload {
  @Field(() => User)
  user: User;

  @Field({ description: 'The new key. Shown here and to admins on the profile; store it safely.' })
  accessKey: string;

  @Field(() => Date, { nullable: true, description: 'Set when a grace period was asked for.' })
  previousKeyExpiresAt: Date | null;
}
