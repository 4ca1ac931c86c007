import { Ctx, Query, Resolver } from 'type-graphql';
import { Can } from '../request/can';
import { CurrentActor, type Actor, type RequestContext } from '../request/context';
import type { OrganizationService } from './organization.service';
import { Organization } from './organization.entity';

@Resolver(() => Organization)
export class OrganizationResolver {
  constructor(private readonly organizations: OrganizationService) {}

  @Can('read', 'Organization', { on: 'caller' })
  @Query(() => Organization, { description: "The caller's organization." })
  organization(@CurrentActor() actor: Actor, @Ctx() ctx: RequestContext): Promise<Organization> {
    return this.organizations.current(actor, ctx.loaders);
  }
}
