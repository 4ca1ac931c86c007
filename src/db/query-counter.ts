import type { Logger as TypeOrmLogger } from 'typeorm';

/**
 * TypeORM calls logQuery for every statement it sends, so counting here counts every round trip
 * the service makes. Tests read it to prove a path runs no SQL, or a bounded number.
 */
export class QueryCounter implements TypeOrmLogger {
  count = 0;

  logQuery(): void {
    this.count++;
  }
  logQueryError(): void {}
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(): void {}
}
