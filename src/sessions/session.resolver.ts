import { Arg, Ctx, Field, Mutation, ObjectType, Resolver } from 'type-graphql';

import { Can, Public } from '../request/can';
import { type Actor, CurrentActor, type RequestContext } from '../request/context';
import { User } from '../users/user.entity';
import type { SessionService } from './session.service';

@ObjectType({ simpleResolvers: true })
export class LoginPayload {
  @Field({ description: 'Send as "Authorization: Bearer <token>". Shown once; stored only as a digest.' })
  token: string;

  @Field({ description: 'Fixed: using the session does not extend it.' })
  expiresAt: Date;

  @Field(() => User)
  user: User;
}

@Resolver()
export class SessionResolver {
  constructor(private readonly sessions: SessionService) {}

  /** See SessionService.login: a session token for a person's email and password. */
  @Public()
  @Mutation(() => LoginPayload, {
    description: 'Signs a person in. The same error for an unknown email and a wrong password.',
  })
  login(
    @Ctx() ctx: RequestContext,
    @Arg('email') email: string,
    @Arg('password') password: string,
  ): Promise<LoginPayload> {
    return this.sessions.login({ email, password, ip: ctx.ip, requestId: ctx.requestId });
  }

  /** See SessionService.logout. */
  @Can('read', 'User', { on: 'caller' })
  @Mutation(() => Boolean, { description: 'Ends the session that sent this request.' })
  logout(@CurrentActor() actor: Actor): Promise<boolean> {
    return this.sessions.logout(actor);
  }

  /** See SessionService.changePassword. */
  @Can('changePassword', 'User', { on: 'caller' })
  @Mutation(() => Boolean, { description: "Changes the caller's own password and ends their other sessions." })
  changePassword(
    @CurrentActor() actor: Actor,
    @Arg('currentPassword') currentPassword: string,
    @Arg('newPassword') newPassword: string,
  ): Promise<boolean> {
    return this.sessions.changePassword(actor, { currentPassword, newPassword });
  }
}
