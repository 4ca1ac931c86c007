import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import { AccessKeyResolver } from './access-keys/access-key.resolver';
import { AccessKeyService } from './access-keys/access-key.service';
import { Authenticator } from './auth/authenticate';
import type { KeyCrypto } from './auth/key-crypto';
import { OrganizationResolver } from './organizations/organization.resolver';
import { OrganizationService } from './organizations/organization.service';
import { UserConnectionResolver, UserResolver } from './users/user.resolver';
import { UserService } from './users/user.service';
import type { ContainerType } from 'type-graphql';

export interface Services {
  readonly dataSource: DataSource;
  readonly accessKeys: AccessKeyService;
  readonly users: UserService;
  readonly organizations: OrganizationService;
  readonly authenticator: Authenticator;
}

/** Wires the services once per process; the same wiring serves the HTTP app, the CLI and the tests. */
export function createServices(deps: { dataSource: DataSource; keyCrypto: KeyCrypto; logger: Logger }): Services {
  const accessKeys = new AccessKeyService(deps);
  const users = new UserService({ dataSource: deps.dataSource, accessKeys });
  const organizations = new OrganizationService({ dataSource: deps.dataSource, users });
  const authenticator = new Authenticator({ accessKeys });
  return { dataSource: deps.dataSource, accessKeys, users, organizations, authenticator };
}

export function resolverContainer(services: Services): ContainerType {
  const instances = new Map<unknown, unknown>([
    [UserResolver, new UserResolver(services.users)],
    [UserConnectionResolver, new UserConnectionResolver()],
    [AccessKeyResolver, new AccessKeyResolver(services.users, services.accessKeys)],
    [OrganizationResolver, new OrganizationResolver(services.organizations)],
  ]);
  return {
    get(resolverClass) {
      const instance = instances.get(resolverClass);
      if (!instance) throw new Error(`No instance for resolver ${String((resolverClass as { name?: string }).name)}`);
      return instance;
    },
  };
}
