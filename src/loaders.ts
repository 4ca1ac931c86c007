import DataLoader from 'dataloader';
import { In, type DataSource } from 'typeorm';
import type { AccessKey } from './access-keys/access-key.entity';
import type { AccessKeyService } from './access-keys/access-key.service';
import { Organization } from './organizations/organization.entity';

/** Per-request batching: a list of N users costs one query per kind of related row, not N. */
export interface Loaders {
  organization: DataLoader<string, Organization | null>;
  accessKey: DataLoader<string, AccessKey | null>;
}

function byId<T>(ids: readonly string[], rows: T[], idOf: (row: T) => string): Array<T | null> {
  const map = new Map(rows.map((row) => [idOf(row), row]));
  return ids.map((id) => map.get(id) ?? null);
}

export function createLoaders(deps: { dataSource: DataSource; accessKeys: AccessKeyService }): Loaders {
  return {
    organization: new DataLoader(async (ids) =>
      byId(ids, await deps.dataSource.getRepository(Organization).findBy({ id: In([...ids]) }), (o) => o.id),
    ),
    accessKey: new DataLoader(async (userIds) =>
      byId(userIds, await deps.accessKeys.findByUserIds(userIds), (k) => k.userId),
    ),
  };
}
