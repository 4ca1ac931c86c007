import { Field, InputType, Int } from 'type-graphql';

import { Role } from './user.entity';

@InputType({ description: 'Narrows the Manage Users list; all given conditions must hold.' })
export class UsersFilter {
  @Field({ nullable: true, description: 'Part of the name or email, any letter case.' })
  search?: string;

  @Field(() => Role, { nullable: true })
  role?: Role;

  @Field({ nullable: true })
  isActive?: boolean;

  @Field(() => Int, {
    nullable: true,
    description:
      'Admins: users whose access key expires within this many days (0 to 3650), already expired keys included.',
  })
  keyExpiresWithinDays?: number | null;
}

@InputType()
export class CreateUserInput {
  @Field()
  email: string;

  @Field()
  name: string;

  @Field(() => Role, { defaultValue: Role.MEMBER })
  role: Role;

  @Field({ nullable: true, description: 'At least 12 characters; a user without one can only use the access key.' })
  password?: string;
}

@InputType({ description: 'Only the given fields change. Saving also creates the access key if the user has none.' })
export class UpdateUserInput {
  @Field({ nullable: true })
  email?: string;

  @Field({ nullable: true })
  name?: string;
}
