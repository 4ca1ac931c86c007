import { Field, ID, InputType, ObjectType } from 'type-graphql';

import { PageInfo } from '../graphql/pagination';
import { AuditAction, AuditEvent } from './audit-event.entity';

@InputType({ description: 'All given conditions must hold; since is inclusive, until exclusive.' })
export class AuditEventsFilter {
  @Field(() => AuditAction, { nullable: true })
  action?: AuditAction | null;

  @Field(() => ID, { nullable: true })
  actorId?: string | null;

  @Field(() => ID, { nullable: true })
  targetUserId?: string | null;

  @Field(() => Date, { nullable: true })
  since?: Date | null;

  @Field(() => Date, { nullable: true })
  until?: Date | null;
}

@ObjectType({ simpleResolvers: true })
export class AuditEventEdge {
  @Field({ description: 'Opaque; valid as "after" for your organization only (the same value as the node\'s id).' })
  cursor: string;

  @Field(() => AuditEvent)
  node: AuditEvent;
}

@ObjectType({ simpleResolvers: true })
export class AuditEventConnection {
  @Field(() => [AuditEventEdge])
  edges: AuditEventEdge[];

  @Field(() => PageInfo)
  pageInfo: PageInfo;
}
