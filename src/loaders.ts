import DataLoader from 'dataloader';
import { In } from 'typeorm';
import type { AccessKey } from './access-keys/access-key.entity';
import { scopeOf } from './auth/abilities';
import type { Actor } from './context';
import { whereScope } from './db/scope';
import { Organization } from './organizations/organization.entity';
import type { Services } from './services';
import { User } from './users/user.entity';

/** Per-request batching: a list of N users costs one query per kind of related row, not N. */
export interface Loaders {
  organization: DataLoader<string, Organization | null>;
  accessKey: DataLoader<string, AccessKey | null>;
  /** Users the caller may read, by id (the actors and targets of audit events). */
  user: DataLoader<string, User | null>;
  /** Records ACCESS_KEY_VIEWED once per user per request, for a whole page in one insert. */
  keyView: DataLoader<{ userId: string; organizationId: string }, true, string>;
}

function byId<T>(ids: readonly string[], rows: T[], idOf: (row: T) => string): Array<T | null> {
  const map = new Map(rows.map((row) => [idOf(row), row]));
  return ids.map((id) => map.get(id) ?? null);
}

export function createLoaders(services: Services, actor: Actor | null): Loaders {
  const { dataSource } = services;
  return {
    organization: new DataLoader(async (ids) =>
      byId(ids, await dataSource.getRepository(Organization).findBy({ id: In([...ids]) }), (o) => o.id),
    ),
    accessKey: new DataLoader(async (userIds) => byId(userIds, await services.accessKeys.findByUserIds(userIds), (k) => k.userId)),
    user: new DataLoader(async (ids) => {
      if (!actor) return ids.map(() => null);
      const query = whereScope(dataSource.getRepository(User).createQueryBuilder('u'), scopeOf(actor.ability, 'read', 'User'));
      return byId(ids, await query.andWhere('u.id IN (:...ids)', { ids }).getMany(), (u) => u.id);
    }),
    keyView: new DataLoader(
      async (targets) => {
        if (!actor) throw new Error('Key views are recorded for authenticated callers only');
        await services.audit.recordKeyViews(actor, targets);
        return targets.map(() => true as const);
      },
      { cacheKeyFn: (target) => target.userId },
    ),
  };
}
