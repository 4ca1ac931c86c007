import { Ctx, Query, Resolver } from 'type-graphql';
import { CurrentActor, type Actor, type RequestContext } from '../request/context';
import type { OrganizationService } from './organization.service';
import { Organization } from './organization.entity';

@Resolver(() => Organization)
export class OrganizationResolver {
  constructor(private readonly organizations: OrganizationService) {}

  @Query(() => Organization, { description: "The caller's organization." })
  organization(@CurrentActor() actor: Actor, @Ctx() ctx: RequestContext): Promise<Organization> {
    return this.organizations.current(actor, ctx.loaders);
  }
}
