import type { GraphQLResolveInfo } from 'graphql';
import {
  Arg,
  Args,
  ArgsType,
  Ctx,
  Field,
  FieldResolver,
  ID,
  Info,
  Int,
  Mutation,
  Query,
  Resolver,
  Root,
} from 'type-graphql';

import { NotFoundError } from '../errors';
import { ResolvedBy } from '../graphql/direct-resolver';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../graphql/pagination';
import { selectedFieldNames } from '../graphql/selection';
import { Organization } from '../organizations/organization.entity';
import { Can } from '../request/can';
import { type Actor, CurrentActor, currentActorOf, type RequestContext } from '../request/context';
import { Role, User } from './user.entity';
import { CreateUserInput, UpdateUserInput, UsersFilter } from './user.inputs';
import { pageColumnsFor } from './user.queries';
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

/**
 * Query.me's answer: the caller's profile read at authentication (changes to it evict the cached principal, so
 * it is current). @throws UnauthenticatedError for a request without credentials.
 */
function meOf(_root: unknown, context: RequestContext): User {
  return currentActorOf(context).principal.user as User;
}

@Resolver(() => User)
export class UserResolver {
  constructor(private readonly userService: UserService) {}

  /**
   * The caller's profile as of authentication (meOf), with no query; resolved directly (ResolvedBy): the most
   * asked field of all, without type-graphql's wrapper (instance lookup, parameter array) on each request.
   * @throws UnauthenticatedError without credentials.
   */
  @Can('read', 'User', { on: 'caller' })
  @ResolvedBy(meOf)
  @Query(() => User, { description: 'The caller.' })
  me(@Ctx() ctx: RequestContext): User {
    return meOf(undefined, ctx);
  }

  /**
   * One user held to the caller's abilities (UserService.get), its key revealed with it when `accessKey` is
   * asked for. @throws NotFoundError, BadInputError (id).
   */
  @Can('read', 'User', { on: { arg: 'id' } })
  @Query(() => User, {
    nullable: true,
    description: 'NOT_FOUND when the user does not exist or is not visible to you.',
  })
  user(
    @CurrentActor() actor: Actor,
    @Ctx() ctx: RequestContext,
    @Arg('id', () => ID) id: string,
    @Info() info: GraphQLResolveInfo,
  ): Promise<User> {
    return this.userService.get(actor, id, ctx.loaders, {
      revealKey: selectedFieldNames(info, []).has('accessKey'),
    });
  }

  /**
   * A page of the users the caller may read (UserService.list), reading only the columns its nodes' fields
   * need (pageColumnsFor). @throws BadInputError (first, search, after).
   */
  @Can('read', 'User', { on: 'list' })
  @Query(() => UserConnection, { description: 'Users you may see, ordered by name then id.' })
  users(
    @CurrentActor() actor: Actor,
    @Ctx() ctx: RequestContext,
    @Args(() => UsersArgs) args: UsersArgs,
    @Info() info: GraphQLResolveInfo,
  ): Promise<UserConnection> {
    const columns = pageColumnsFor(selectedFieldNames(info, ['edges', 'node']));
    return this.userService.list(actor, { ...args, first: args.first ?? DEFAULT_PAGE_SIZE, columns }, ctx.loaders);
  }

  /** The user's organization, batched per request (loaders). @throws NotFoundError when it is gone. */
  @Can('read', 'User', { field: 'organization', on: 'with-parent' })
  @FieldResolver(() => Organization, { description: "The user's organization." })
  async organization(@Root() user: User, @Ctx() ctx: RequestContext): Promise<Organization> {
    const organization = await ctx.loaders.organization.load(user.organizationId);
    if (!organization) throw new NotFoundError('Organization');
    return organization;
  }

  /** See UserService.create (errors thrown there). */
  @Can('create', 'User', { on: 'organization' })
  @Mutation(() => User, {
    description:
      'Admins: creates a user of your organization together with their access key (read it on their profile). ' +
      'CONFLICT when the email is taken.',
  })
  createUser(@CurrentActor() actor: Actor, @Arg('input', () => CreateUserInput) input: CreateUserInput): Promise<User> {
    return this.userService.create(actor, input);
  }

  /** See UserService.update: each field given in `input` is checked by name (abilities.ts). */
  @Can('update', 'User', { on: { arg: 'id' } })
  @Mutation(() => User, {
    description:
      'Changes the given fields. Everyone may change their own name; admins any name and email in their ' +
      'organization. An admin saving a user who has no access key also creates it.',
  })
  updateUser(
    @CurrentActor() actor: Actor,
    @Arg('id', () => ID) id: string,
    @Arg('input', () => UpdateUserInput) input: UpdateUserInput,
    @Ctx() ctx: RequestContext,
  ): Promise<User> {
    return this.userService.update(actor, id, input, ctx.loaders);
  }

  /** See UserService.setRole. */
  @Can('setRole', 'User', { on: { arg: 'id' } })
  @Mutation(() => User, {
    description:
      "Admins: changes a user's role, from their next request on. CONFLICT for the organization's last active admin.",
  })
  setUserRole(
    @CurrentActor() actor: Actor,
    @Arg('id', () => ID) id: string,
    @Arg('role', () => Role) role: Role,
  ): Promise<User> {
    return this.userService.setRole(actor, id, role);
  }

  /** See UserService.setActive. */
  @Can('deactivate', 'User', { on: { arg: 'id' } })
  @Mutation(() => User, {
    description:
      'Admins: the user can no longer sign in or use their key, and their sessions end. CONFLICT for the ' +
      "organization's last active admin.",
  })
  deactivateUser(@CurrentActor() actor: Actor, @Arg('id', () => ID) id: string): Promise<User> {
    return this.userService.setActive(actor, id, false);
  }

  /** See UserService.setActive. */
  @Can('reactivate', 'User', { on: { arg: 'id' } })
  @Mutation(() => User, {
    description:
      'Admins: the user can sign in and use their key again (sessions ended by the deactivation stay ended).',
  })
  reactivateUser(@CurrentActor() actor: Actor, @Arg('id', () => ID) id: string): Promise<User> {
    return this.userService.setActive(actor, id, true);
  }
}

@Resolver(() => UserConnection)
export class UserConnectionResolver {
  /** One count over the page's filter and scope, run only when the field is asked for. */
  @Can('read', 'User', { on: 'list' })
  @FieldResolver(() => Int, { description: 'All users matching the filter, across pages.' })
  totalCount(@Root() connection: UserConnection): Promise<number> {
    return connection.countTotal();
  }
}
