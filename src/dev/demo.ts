import type { DataSource } from 'typeorm';

import { AccessKey } from '../access-keys/access-key.entity';
import type { AccessKeyService } from '../access-keys/access-key.service';
import { randomBase62 } from '../access-keys/key-format';
import { type AuditService, SYSTEM_ACTOR } from '../audit/audit.service';
import { AuditAction } from '../audit/audit-event.entity';
import { Organization } from '../organizations/organization.entity';
import type { OrganizationService } from '../organizations/organization.service';
import { Role, User } from '../users/user.entity';

export const DEMO_ADMIN_EMAIL = 'admin@demo.example';

export interface DemoAdmin {
  email: string;
  /** Only on the run that created it: afterwards only its hash exists. */
  password: string | null;
  accessKey: string | null;
}

/**
 * The embedded default's first run creates a demo organization; later runs find its first active admin again
 * and reveal that admin's key for the console, as any reveal is: recorded as ACCESS_KEY_VIEWED (by the system,
 * in the transaction that reads the key, FOR SHARE so that the key shown is the key as the record commits).
 * Only the demo organization (the first one created) is looked in: an admin of an organization made later with
 * the CLI is not the demo's, and its key is not printed. Takes only the services it uses (not the wiring's
 * Services type: dev/ sits below server/).
 * @throws the database's error.
 */
export async function ensureDemoOrganization(services: {
  dataSource: DataSource;
  organizations: Pick<OrganizationService, 'createWithAdmin'>;
  accessKeys: Pick<AccessKeyService, 'reveal'>;
  audit: Pick<AuditService, 'record'>;
}): Promise<DemoAdmin> {
  const { dataSource } = services;
  if ((await dataSource.getRepository(Organization).count()) === 0) {
    const password = randomBase62(20);
    const created = await services.organizations.createWithAdmin({
      name: 'Demo organization',
      adminEmail: DEMO_ADMIN_EMAIL,
      adminName: 'Demo Admin',
      adminPassword: password,
    });
    return { email: created.adminEmail, password, accessKey: created.adminAccessKey };
  }
  return dataSource.transaction(async (manager) => {
    const [demo] = await manager.getRepository(Organization).find({ order: { createdAt: 'ASC', id: 'ASC' }, take: 1 });
    const admin = demo.isActive
      ? await manager.getRepository(User).findOne({
          where: { organizationId: demo.id, role: Role.ADMIN, isActive: true },
          order: { createdAt: 'ASC', id: 'ASC' },
        })
      : null;
    if (!admin) return { email: '(no active admin in the demo organization)', password: null, accessKey: null };
    const key = await manager
      .getRepository(AccessKey)
      .findOne({ where: { userId: admin.id }, lock: { mode: 'pessimistic_read' } });
    if (!key) return { email: admin.email, password: null, accessKey: null };
    await services.audit.record(manager, SYSTEM_ACTOR, {
      action: AuditAction.ACCESS_KEY_VIEWED,
      organizationId: demo.id,
      targetUserId: admin.id,
    });
    return { email: admin.email, password: null, accessKey: services.accessKeys.reveal(key) };
  });
}
