import type { ScopeCondition } from '../authorization/abilities';

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
