import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';
import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

export enum AuditAction {
  USER_CREATED = 'USER_CREATED',
  USER_UPDATED = 'USER_UPDATED',
  USER_ROLE_CHANGED = 'USER_ROLE_CHANGED',
  USER_DEACTIVATED = 'USER_DEACTIVATED',
  USER_REACTIVATED = 'USER_REACTIVATED',
  ACCESS_KEY_CREATED = 'ACCESS_KEY_CREATED',
  ACCESS_KEY_VIEWED = 'ACCESS_KEY_VIEWED',
  ACCESS_KEY_REGENERATED = 'ACCESS_KEY_REGENERATED',
  LOGIN_SUCCEEDED = 'LOGIN_SUCCEEDED',
  LOGIN_FAILED = 'LOGIN_FAILED',
  PASSWORD_CHANGED = 'PASSWORD_CHANGED',
  /** A key was reported leaked (GitHub secret scanning or an admin) and revoked; `location` says where it was found. */
  ACCESS_KEY_LEAK_REPORTED = 'ACCESS_KEY_LEAK_REPORTED',
  ACCESS_KEY_POLICY_CHANGED = 'ACCESS_KEY_POLICY_CHANGED',
  /** A session token was reported leaked (GitHub secret scanning or an admin) and its session ended; `location` says where it was found. */
  SESSION_TOKEN_LEAK_REPORTED = 'SESSION_TOKEN_LEAK_REPORTED',
  /** A person signed out: `logout` ended the session that sent it (actor and target are that person). */
  LOGGED_OUT = 'LOGGED_OUT',
}
registerEnumType(AuditAction, { name: 'AuditAction' });

export enum ActorKind {
  SESSION = 'SESSION',
  ACCESS_KEY = 'ACCESS_KEY',
  SYSTEM = 'SYSTEM',
}
registerEnumType(ActorKind, {
  name: 'ActorKind',
  description: 'How the actor authenticated; SYSTEM for operator commands.',
});

/** One sensitive act. Holds who, what, whom, from where: never key material, tokens or passwords. */
@ObjectType({ simpleResolvers: true })
@Entity({ name: 'audit_events' })
export class AuditEvent {
  // The column is one service-wide sequence: the API shows an opaque token of it instead (AuditService.list,
  // src/graphql/opaque-ids.ts), which counts nothing of other organizations.
  @Field(() => ID, {
    description: 'Opaque (not a number, no order of its own); the same on every read. Also a valid "after".',
  })
  @PrimaryGeneratedColumn('identity', { type: 'bigint', generatedIdentity: 'ALWAYS' })
  id: string;

  @Column({ name: 'organization_id', type: 'uuid', nullable: true })
  organizationId: string | null;

  @Field(() => AuditAction)
  @Column({ type: 'text' })
  action: AuditAction;

  @Column({ name: 'actor_user_id', type: 'uuid', nullable: true })
  actorUserId: string | null;

  @Field(() => ActorKind)
  @Column({ name: 'actor_kind', type: 'text' })
  actorKind: ActorKind;

  @Column({ name: 'target_user_id', type: 'uuid', nullable: true })
  targetUserId: string | null;

  @Field(() => String, { nullable: true })
  @Column({ type: 'text', nullable: true })
  ip: string | null;

  @Field(() => String, { nullable: true })
  @Column({ name: 'request_id', type: 'text', nullable: true })
  requestId: string | null;

  @Field()
  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Field(() => String, {
    nullable: true,
    description:
      'ACCESS_KEY_LEAK_REPORTED, SESSION_TOKEN_LEAK_REPORTED: where the key or token was found, as the report gave it (never the key or token). Null otherwise.',
  })
  @Column({ type: 'text', nullable: true })
  location: string | null;
}
