import { Ctx, Query, Resolver } from 'type-graphql';

import { Can } from '../request/can';
import { type Actor, CurrentActor, type RequestContext } from '../request/context';
import { Organization } from './organization.entity';
import type { OrganizationService } from './organization.service';

@Resolver(() => Organization)
export class OrganizationResolver {
  constructor(private readonly organizations: OrganizationService) {}

  /** See OrganizationService.current. */
  @Can('read', 'Organization', { on: 'caller' })
  @Query(() => Organization, { description: "The caller's organization." })
  organization(@CurrentActor() actor: Actor, @Ctx() ctx: RequestContext): Promise<Organization> {
    return this.organizations.current(actor, ctx.loaders);
  }
}
