import type { DataSource } from 'typeorm';

import { AccessKey } from '../access-keys/access-key.entity';
import type { AccessKeyService } from '../access-keys/access-key.service';
import { randomBase62 } from '../access-keys/key-format';
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
 * The embedded default's first run creates a demo organization; later runs find its first admin again. Takes
 * only the services it uses (not the wiring's Services type: dev/ sits below server/).
 */
export async function ensureDemoOrganization(services: {
  dataSource: DataSource;
  organizations: Pick<OrganizationService, 'createWithAdmin'>;
  accessKeys: Pick<AccessKeyService, 'reveal'>;
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
  const admin = await dataSource
    .getRepository(User)
    .findOne({ where: { role: Role.ADMIN, isActive: true }, order: { createdAt: 'ASC' } });
  if (!admin) return { email: '(no active admin)', password: null, accessKey: null };
  const key = await dataSource.getRepository(AccessKey).findOneBy({ userId: admin.id });
  return { email: admin.email, password: null, accessKey: key ? services.accessKeys.reveal(key) : null };
}
