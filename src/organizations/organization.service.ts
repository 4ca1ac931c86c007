import type { DataSource } from 'typeorm';

import { SYSTEM_ACTOR } from '../audit/audit.service';
import { NotFoundError } from '../errors';
import { normalizeName } from '../graphql/text-checks';
import type { Actor } from '../request/actor';
import type { Loaders } from '../request/loaders';
import { Role } from '../users/user.entity';
import type { UserService } from '../users/user.service';
import { Organization } from './organization.entity';

export interface NewOrganization {
  name: string;
  adminEmail: string;
  adminName: string;
  adminPassword?: string | null;
}

export interface CreatedOrganization {
  organizationId: string;
  adminUserId: string;
  adminEmail: string;
  adminAccessKey: string;
}

export class OrganizationService {
  constructor(private readonly deps: { dataSource: DataSource; users: UserService }) {}

  /**
   * organization: the caller's own organization, read through the request's loader.
   * @throws NotFoundError when it is gone or the caller may not read it (abilities.ts `read` on Organization).
   */
  async current(actor: Actor, loaders: Loaders): Promise<Organization> {
    const organization = await loaders.organization.load(actor.principal.organizationId);
    if (!organization || !actor.ability.can('read', organization)) throw new NotFoundError('Organization');
    return organization;
  }

  /** An organization is never without an admin: both, and the admin's key, commit together or not at all. */
  async createWithAdmin(params: NewOrganization): Promise<CreatedOrganization> {
    const name = normalizeName(params.name, 'Organization name');
    const passwordHash =
      params.adminPassword == null
        ? null
        : await this.deps.users.hashNewPassword(params.adminPassword, 'password', null);
    return this.deps.dataSource.transaction(async (manager) => {
      const organization = await manager.getRepository(Organization).save({ name });
      const { user, key } = await this.deps.users.insert(manager, {
        organizationId: organization.id,
        email: params.adminEmail,
        name: params.adminName,
        role: Role.ADMIN,
        passwordHash,
        actor: SYSTEM_ACTOR,
      });
      return { organizationId: organization.id, adminUserId: user.id, adminEmail: user.email, adminAccessKey: key.key };
    });
  }
}
