import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';

import { Can } from '../request/can';
import { type Actor, CurrentActor, type RequestContext } from '../request/context';
import type { LeakReportService } from './leak-report.service';
import { ReportLeakedAccessKeyPayload } from './leak-report.types';

/** reportLeakedAccessKey: an admin's report of a key found where it should not be. */
@Resolver()
export class LeakReportResolver {
  constructor(private readonly deps: { leakReports: LeakReportService }) {}

  /** See LeakReportService.reportByAdmin (errors thrown there). */
  @Can('regenerateAccessKey', 'User', {
    on: 'organization',
    message: 'Only admins of the organization can report a leaked access key.',
  })
  @Mutation(() => ReportLeakedAccessKeyPayload, {
    description:
      'Admins: revokes a key of your organization found somewhere (location: a URL, a file, a place, at most 2,000 ' +
      "characters, no control or invisible characters; kept on the user's profile and in the audit log). A new key is " +
      'issued at once, with no grace period; read it on the profile. A key of another organization answers exactly like ' +
      'a key that was not found: revoked false. A session token (cas_…) of your organization ends that session at ' +
      'once (revoked true, with its user); one of another organization answers like a key not found. A string shaped ' +
      'like neither a key nor a session token is BAD_USER_INPUT.',
  })
  reportLeakedAccessKey(
    @CurrentActor() actor: Actor,
    @Arg('key') key: string,
    @Arg('location') location: string,
    @Ctx() ctx: RequestContext,
  ): Promise<ReportLeakedAccessKeyPayload> {
    return this.deps.leakReports.reportByAdmin(actor, { key, location }, ctx.loaders);
  }
}
