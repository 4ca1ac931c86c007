import type { ScopeCondition } from '../authorization/abilities';
import { SqlWhere } from '../db/scope';
import type { Role } from './user.entity';

/**
 * The statement that answers `totalCount` from the per-organization counts (table organization_user_counts,
 * kept exact by triggers: migration UserCounts), or null when they cannot: a search or a key-expiry filter (which
 * count the matching rows), or a scope other than one whole organization (a member sees only themselves). Returns a statement with
 * numbered parameters whose one row has `n`, the number of users.
 */
export function countFromCounts(params: {
  scope: readonly ScopeCondition[];
  filter: { search?: string; role?: Role | null; isActive?: boolean | null; keyExpiresWithinDays?: number | null };
}): { text: string; values: unknown[] } | null {
  const { scope, filter } = params;
  const [only] = scope;
  const byKeyExpiry = filter.keyExpiresWithinDays !== undefined && filter.keyExpiresWithinDays !== null;
  if (filter.search || byKeyExpiry || scope.length !== 1 || Object.keys(only).join() !== 'organizationId') return null;
  const where = new SqlWhere().and('organization_id = ?', only.organizationId);
  if (filter.role) where.and('role = ?', filter.role);
  if (filter.isActive !== undefined && filter.isActive !== null) where.and('is_active = ?', filter.isActive);
  return {
    text: `SELECT coalesce(sum(users), 0)::int AS n FROM organization_user_counts WHERE ${where}`,
    values: where.values,
  };
}
