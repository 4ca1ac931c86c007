import { createHash } from 'node:crypto';
import type { QueryResultRow } from 'pg';
import type { DataSource } from 'typeorm';
import type { ScopeCondition } from '../auth/abilities';
import { preparedQuery } from './prepared';

/**
 * A WHERE clause under construction, with numbered parameters. Read paths build their SQL with it and run
 * it as a prepared statement: measured here, TypeORM's query builder cost about 450 µs of CPU per query
 * against about 90 µs for the same statement sent directly.
 */
export class SqlWhere {
  private readonly parts: string[] = [];
  readonly values: unknown[] = [];

  /** Adds a condition; `?` marks stand for the given values, in order. */
  and(condition: string, ...values: unknown[]): this {
    let next = 0;
    this.parts.push(condition.replace(/\?/g, () => this.param(values[next++])));
    return this;
  }

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

  toString(): string {
    return this.parts.length ? this.parts.join(' AND ') : 'true';
  }
}

/** Runs `text` as a prepared statement named after its own text, so each shape is planned once per connection. */
export function runPrepared<T extends QueryResultRow>(dataSource: DataSource, text: string, values: unknown[]): Promise<T[]> {
  let name = statementNames.get(text);
  if (!name) {
    name = `q_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    // A handful of shapes exist (one per role scope and filter combination); the bound is a safety net.
    if (statementNames.size < MAX_STATEMENT_NAMES) statementNames.set(text, name);
  }
  return preparedQuery<T>(dataSource, { name, text, values });
}

const statementNames = new Map<string, string>();
const MAX_STATEMENT_NAMES = 1000;
