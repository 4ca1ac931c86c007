import type { GraphQLSchema } from 'graphql';
import { buildSchema, type ContainerType } from 'type-graphql';
import { AccessKeyResolver } from './access-keys/access-key.resolver';
import { AccessKeyPolicyResolver } from './access-keys/key-policy.resolver';
import { AuditResolver } from './audit/audit.resolver';
import { OrganizationResolver } from './organizations/organization.resolver';
import { SessionResolver } from './sessions/session.resolver';
import { UserConnectionResolver, UserResolver } from './users/user.resolver';

export const RESOLVERS = [
  UserResolver,
  UserConnectionResolver,
  AccessKeyResolver,
  OrganizationResolver,
  SessionResolver,
  AuditResolver,
  AccessKeyPolicyResolver,
] as const;

/** The schema is built from the resolver classes; `container` hands type-graphql the instances to call. */
export function buildAppSchema(container?: ContainerType): Promise<GraphQLSchema> {
  return buildSchema({ resolvers: RESOLVERS, container, validate: false });
}
