import type { GraphQLSchema } from 'graphql';
import { buildSchema, type ContainerType } from 'type-graphql';

import { AccessKeyResolver } from '../access-keys/access-key.resolver';
import { AccessKeyPolicyResolver } from '../access-keys/key-policy.resolver';
import { LeakReportResolver } from '../access-keys/leak-report.resolver';
import { AuditResolver } from '../audit/audit.resolver';
import { applyDirectResolvers } from '../graphql/direct-resolver';
import { OrganizationResolver } from '../organizations/organization.resolver';
import { enforceDeclaredRules } from '../request/can';
import { SessionResolver } from '../sessions/session.resolver';
import { UserConnectionResolver, UserResolver } from '../users/user.resolver';
import type { Services } from './services';

export const RESOLVERS = [
  UserResolver,
  UserConnectionResolver,
  AccessKeyResolver,
  LeakReportResolver,
  OrganizationResolver,
  SessionResolver,
  AuditResolver,
  AccessKeyPolicyResolver,
] as const;

/**
 * The schema is built from the resolver classes; `container` hands type-graphql the instances to call. The
 * rules declared with @Can that are checked before a field resolves are put in front of it here
 * (enforceDeclaredRules), in front of the fields that resolve without type-graphql's wrapper
 * (applyDirectResolvers): this is the only way the service builds its schema.
 */
export async function buildAppSchema(container?: ContainerType): Promise<GraphQLSchema> {
  return enforceDeclaredRules(
    applyDirectResolvers(await buildSchema({ resolvers: RESOLVERS, container, validate: false })),
  );
}

/** The resolver instances type-graphql calls, built once from the wired services. */
export function resolverContainer(services: Services): ContainerType {
  const instances = new Map<unknown, unknown>([
    [UserResolver, new UserResolver(services.users)],
    [UserConnectionResolver, new UserConnectionResolver()],
    [AccessKeyResolver, new AccessKeyResolver(services)],
    [LeakReportResolver, new LeakReportResolver(services)],
    [OrganizationResolver, new OrganizationResolver(services.organizations)],
    [SessionResolver, new SessionResolver(services.sessions)],
    [AuditResolver, new AuditResolver(services.audit)],
    [AccessKeyPolicyResolver, new AccessKeyPolicyResolver(services.keyPolicy)],
  ]);
  return {
    get(resolverClass) {
      const instance = instances.get(resolverClass);
      if (!instance) throw new Error(`No instance for resolver ${String((resolverClass as { name?: string }).name)}`);
      return instance;
    },
  };
}
