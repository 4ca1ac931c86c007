import { Args, ArgsType, Ctx, Field, FieldResolver, Int, Query, Resolver, Root } from 'type-graphql';

import { DEFAULT_PAGE_SIZE } from '../graphql/pagination';
import { Can } from '../request/can';
import { type Actor, CurrentActor, type RequestContext } from '../request/context';
import { User } from '../users/user.entity';
import { type AuditService, MAX_AUDIT_PAGE_SIZE } from './audit.service';
import { AuditEventConnection, AuditEventsFilter } from './audit.types';
import { AuditEvent } from './audit-event.entity';

@ArgsType()
class AuditEventsArgs {
  @Field(() => AuditEventsFilter, { nullable: true })
  filter?: AuditEventsFilter | null;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULT_PAGE_SIZE, description: `At most ${MAX_AUDIT_PAGE_SIZE}.` })
  first?: number | null;

  @Field(() => String, { nullable: true })
  after?: string | null;
}

@Resolver(() => AuditEvent)
export class AuditResolver {
  constructor(private readonly audit: AuditService) {}

  /** A page of the caller's organization's events (AuditService.list). @throws BadInputError (first, after). */
  @Can('read', 'AuditEvent', { on: 'organization', message: 'Only admins can read the audit log.' })
  @Query(() => AuditEventConnection, { description: "Admins: the organization's audit log, newest first." })
  auditEvents(
    @CurrentActor() actor: Actor,
    @Args(() => AuditEventsArgs) args: AuditEventsArgs,
  ): Promise<AuditEventConnection> {
    return this.audit.list(actor, { ...args, first: args.first ?? DEFAULT_PAGE_SIZE });
  }

  /** Who acted; users outside the caller's view come back null (the user loader is scoped by the abilities). */
  @Can('read', 'AuditEvent', { on: 'parent' })
  @FieldResolver(() => User, {
    nullable: true,
    description: 'Null for the system, an unknown sign-in or a deleted user.',
  })
  actor(@Root() event: AuditEvent, @Ctx() ctx: RequestContext): Promise<User | null> | null {
    return event.actorUserId ? ctx.loaders.user.load(event.actorUserId) : null;
  }

  /** Whom the event is about; null as for `actor`. */
  @Can('read', 'AuditEvent', { on: 'parent' })
  @FieldResolver(() => User, {
    nullable: true,
    description: 'The user the event is about. Null when there is none or the user was deleted.',
  })
  target(@Root() event: AuditEvent, @Ctx() ctx: RequestContext): Promise<User | null> | null {
    return event.targetUserId ? ctx.loaders.user.load(event.targetUserId) : null;
  }
}
