import type { Logger as TypeOrmLogger } from 'typeorm';

const RECENT_LIMIT = 200;

/**
 * TypeORM calls logQuery for every statement it sends, so counting here counts every round trip
 * the service makes. Tests read it to prove a path runs no SQL, or a bounded number.
 */
export class QueryCounter implements TypeOrmLogger {
  count = 0;
  /** The latest statements (text only, never parameters), for tests that check what ran. */
  readonly recent: string[] = [];

  /** Counts and remembers one statement (TypeORM calls it before sending each). */
  logQuery(query: string): void {
    this.count++;
    this.recent.push(query);
    if (this.recent.length > RECENT_LIMIT) this.recent.shift();
  }

  /** Statements run since `count` was `since` (as far as `recent` reaches back). */
  since(since: number): string[] {
    return this.recent.slice(Math.max(0, this.recent.length - (this.count - since)));
  }
  /** TypeORM's hook; nothing to count here. */
  logQueryError(): void {}
  /** TypeORM's hook; nothing to count here. */
  logQuerySlow(): void {}
  /** TypeORM's hook; nothing to count here. */
  logSchemaBuild(): void {}
  /** TypeORM's hook; nothing to count here. */
  logMigration(): void {}
  /** TypeORM's hook; nothing to count here. */
  log(): void {}
}
