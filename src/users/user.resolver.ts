import { Arg, Args, ArgsType, Ctx, Field, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';

import { NotFoundError } from '../errors';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../graphql/pagination';
import { Organization } from '../organizations/organization.entity';
import { Can } from '../request/can';
import { type Actor, CurrentActor, type RequestContext } from '../request/context';
import { Role, User } from './user.entity';
import { CreateUserInput, UpdateUserInput, UsersFilter } from './user.inputs';
import type { UserService } from './user.service';
import { UserConnection } from './user.types';

@ArgsType()
class UsersArgs {
  @Field(() => UsersFilter, { nullable: true })
  filter?: UsersFilter;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULT_PAGE_SIZE, description: `At most ${MAX_PAGE_SIZE}.` })
  first?: number | null;

  @Field(() => String, { nullable: true, description: 'endCursor of the previous page.' })
  after?: string | null;
}

@Resolver(() => User)
export class UserResolver {
  constructor(private readonly userService: UserService) {}

  @Can('read', 'User', { on: 'caller' })
  @Query(() => User, { description: 'The caller.' })
  me(@CurrentActor() actor: Actor): User {
    return this.userService.me(actor);
  }

  @Can('read', 'User', { on: { arg: 'id' } })
  @Query(() => User, {
    nullable: true,
    description: 'NOT_FOUND when the user does not exist or is not visible to you.',
  })
  user(@CurrentActor() actor: Actor, @Ctx() ctx: RequestContext, @Arg('id', () => ID) id: string): Promise<User> {
    return this.userService.get(actor, id, ctx.loaders);
  }

  @Can('read', 'User', { on: 'list' })
  @Query(() => UserConnection, { description: 'Users you may see, ordered by name then id.' })
  users(
    @CurrentActor() actor: Actor,
    @Ctx() ctx: RequestContext,
    @Args(() => UsersArgs) args: UsersArgs,
  ): Promise<UserConnection> {
    return this.userService.list(actor, { ...args, first: args.first ?? DEFAULT_PAGE_SIZE }, ctx.loaders);
  }

  @Can('read', 'User', { field: 'organization', on: 'with-parent' })
  @FieldResolver(() => Organization)
  async organization(@Root() user: User, @Ctx() ctx: RequestContext): Promise<Organization> {
    const organization = await ctx.loaders.organization.load(user.organizationId);
    if (!organization) throw new NotFoundError('Organization');
    return organization;
  }

  @Can('create', 'User', { on: 'organization' })
  @Mutation(() => User)
  createUser(@CurrentActor() actor: Actor, @Arg('input', () => CreateUserInput) input: CreateUserInput): Promise<User> {
    return this.userService.create(actor, input);
  }

  // The fields given in `input` are each checked (everyone may change their own name; ADMIN: name, email).
  @Can('update', 'User', { on: { arg: 'id' } })
  @Mutation(() => User)
  updateUser(
    @CurrentActor() actor: Actor,
    @Arg('id', () => ID) id: string,
    @Arg('input', () => UpdateUserInput) input: UpdateUserInput,
  ): Promise<User> {
    return this.userService.update(actor, id, input);
  }

  @Can('setRole', 'User', { on: { arg: 'id' } })
  @Mutation(() => User)
  setUserRole(
    @CurrentActor() actor: Actor,
    @Arg('id', () => ID) id: string,
    @Arg('role', () => Role) role: Role,
  ): Promise<User> {
    return this.userService.setRole(actor, id, role);
  }

  @Can('deactivate', 'User', { on: { arg: 'id' } })
  @Mutation(() => User)
  deactivateUser(@CurrentActor() actor: Actor, @Arg('id', () => ID) id: string): Promise<User> {
    return this.userService.setActive(actor, id, false);
  }

  @Can('reactivate', 'User', { on: { arg: 'id' } })
  @Mutation(() => User)
  reactivateUser(@CurrentActor() actor: Actor, @Arg('id', () => ID) id: string): Promise<User> {
    return this.userService.setActive(actor, id, true);
  }
}

@Resolver(() => UserConnection)
export class UserConnectionResolver {
  @Can('read', 'User', { on: 'list' })
  @FieldResolver(() => Int, { description: 'All users matching the filter, across pages.' })
  totalCount(@Root() connection: UserConnection): Promise<number> {
    return connection.countTotal();
  }
}
