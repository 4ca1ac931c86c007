import type { Pool, QueryResultRow } from 'pg';
import type { DataSource } from 'typeorm';

/**
 * Runs a hot-path query as a named prepared statement on TypeORM's own pool: PostgreSQL parses and
 * plans it once per connection. It still passes through the data source's logger, so it is counted.
 */
export async function preparedQuery<T extends QueryResultRow>(
  dataSource: DataSource,
  statement: { name: string; text: string; values: unknown[] },
): Promise<T[]> {
  const pool = (dataSource.driver as unknown as { master: Pool }).master;
  dataSource.logger.logQuery(statement.text);
  const result = await pool.query<T>({ name: statement.name, text: statement.text, values: statement.values });
  return result.rows;
}
