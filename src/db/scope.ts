import type { ScopeCondition } from '../authorization/abilities';

/**
 * A column's comparison with one or more values (non-empty) as a prepared statement should write it: `= $n` and
 * the value for one, `= ANY($n)` and the array for more (`placeholder` is `$n`, or `?` for SqlWhere.and).
 *
 * Why two forms: PostgreSQL plans a prepared statement for its values (a custom plan) for its first five runs,
 * then keeps its generic plan only where that is estimated no dearer. An array parameter is estimated as ten
 * elements in the generic plan, so `= ANY($n)` is planned anew on every run even for one value: for a user's
 * profile by id, 0.165 ms of planning for 0.049 ms of execution; for the key lookup, 0.196 for 0.084
 * (docs/performance.md, 2026-12-01 20:23). The one-value form's generic plan is the plan its value gets, so
 * PostgreSQL settles on it after five runs and a read of one row costs the database its execution only.
 * Several values keep the ANY form, planned for their number.
 */
export function oneOrAny<T>(
  placeholder: string,
  values: readonly T[],
): { comparison: string; value: T | readonly T[] } {
  return values.length === 1
    ? { comparison: `= ${placeholder}`, value: values[0] }
    : { comparison: `= ANY(${placeholder})`, value: values };
}

/** A WHERE clause under construction, with numbered parameters; read paths run it with runPrepared. */
export class SqlWhere {
  private readonly parts: string[] = [];
  readonly values: unknown[] = [];

  /** Adds a condition; `?` marks stand for the given values, in order. */
  and(condition: string, ...values: unknown[]): this {
    let next = 0;
    this.parts.push(condition.replace(/\?/g, () => this.param(values[next++])));
    return this;
  }

  /** Adds "`column` is one of `ids`" (non-empty), written as oneOrAny writes it. */
  idIn(column: string, ids: readonly string[]): this {
    const { comparison, value } = oneOrAny('?', ids);
    return this.and(`${column} ${comparison}`, value);
  }

  /** Adds `value` as the next parameter and returns its placeholder (`$1`, `$2`, ...). */
  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  /**
   * The rows an ability's conditions allow (OR of ANDs of equalities), so the same rules that guard
   * single objects scope lists. `columns` maps the rule's fields to columns; any other field fails closed.
   */
  scope(conditions: readonly ScopeCondition[], columns: Readonly<Record<string, string>>): this {
    if (conditions.length === 0) return this.and('false');
    const alternatives = conditions.map((condition) => {
      const equalities = Object.entries(condition).map(([field, value]) => {
        const column = columns[field];
        if (!column) throw new Error(`No column for the rule field "${field}"`);
        return `${column} = ${this.param(value)}`;
      });
      return `(${equalities.join(' AND ') || 'true'})`;
    });
    return this.and(`(${alternatives.join(' OR ')})`);
  }

  /** The conditions joined with AND (`true` when there are none), placeholders included. */
  toString(): string {
    return this.parts.length ? this.parts.join(' AND ') : 'true';
  }
}
