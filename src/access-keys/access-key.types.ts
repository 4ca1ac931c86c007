import { Field, ObjectType } from 'type-graphql';
import { User } from '../users/user.entity';

@ObjectType({ description: 'What can be shown about a key without revealing it.', simpleResolvers: true })
export class AccessKeyInfo {
  @Field({ description: 'Prefix and last four characters.' })
  hint: string;

  @Field()
  createdAt: Date;

  @Field(() => Date, { nullable: true, description: 'When the current key was last used (not the key it replaced); updated at most once a minute.' })
  lastUsedAt: Date | null;

  @Field(() => Date, { nullable: true, description: 'Until then the replaced key still works.' })
  previousKeyExpiresAt: Date | null;

  @Field(() => Date, {
    nullable: true,
    description: "When the current key stops working, from the organization's maxKeyAgeDays; null: never. Past it the key is refused like any invalid key.",
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
