import { Field, ObjectType, registerEnumType } from 'type-graphql';

import { User } from '../users/user.entity';

/** Who reported a leaked key. */
export enum LeakReportSource {
  /** GitHub's secret scanning partner program, at POST /secret-scanning/github. */
  GITHUB_SECRET_SCANNING = 'GITHUB_SECRET_SCANNING',
  /** An admin of the key's organization, with reportLeakedAccessKey. */
  ADMIN = 'ADMIN',
}
registerEnumType(LeakReportSource, { name: 'LeakReportSource', description: 'Who reported a leaked key.' });

@ObjectType({
  simpleResolvers: true,
  description:
    'The answer to reportLeakedAccessKey. A key of another organization and a key that works nowhere get the same ' +
    'answer (revoked false, user null), so nothing is learned about keys outside your organization.',
})
export class ReportLeakedAccessKeyPayload {
  @Field({
    description: "True when the key was a current or grace-period key of your organization's user: it no longer works.",
  })
  revoked: boolean;

  @Field(() => User, {
    nullable: true,
    description: 'Whose key it was (revoked true only). Their new key is on their profile.',
  })
  user: User | null;
}
