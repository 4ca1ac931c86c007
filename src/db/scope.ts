import { Brackets, type ObjectLiteral, type SelectQueryBuilder } from 'typeorm';
import type { ScopeCondition } from '../auth/abilities';

/**
 * Restricts a query to the rows an ability's conditions allow (OR of ANDs of equalities on entity
 * properties): the same rules that guard single objects scope lists, so no query forgets the tenant.
 */
export function whereScope<T extends ObjectLiteral>(
  query: SelectQueryBuilder<T>,
  conditions: readonly ScopeCondition[],
): SelectQueryBuilder<T> {
  const alias = query.alias;
  if (conditions.length === 0) return query.where('false');
  return query.where(
    new Brackets((any) =>
      conditions.forEach((condition, i) =>
        any.orWhere(
          new Brackets((all) => {
            for (const [field, value] of Object.entries(condition)) {
              all.andWhere(`${alias}.${field} = :scope_${i}_${field}`, { [`scope_${i}_${field}`]: value });
            }
          }),
        ),
      ),
    ),
  );
}
