import { createHash } from 'node:crypto';

import type { Pool, PoolClient, QueryConfig, QueryResultRow } from 'pg';
import type { DataSource, EntityManager } from 'typeorm';

import { SqlWhere } from './scope';

const statementNames = new Map<string, string>();
// A handful of shapes exist (one per role scope and filter combination); the bound is a safety net.
const MAX_STATEMENT_NAMES = 1000;

/**
 * Runs a read-path or hot-path query as a prepared statement named after its own text, on TypeORM's pool:
 * PostgreSQL plans each shape once per connection. Measured here, TypeORM's query builder cost about
 * 450 us of CPU per query against about 90 us for the same statement sent this way. It still passes
 * through the data source's logger, so it is counted like every other statement.
 */
export async function runPrepared<T extends QueryResultRow>(
  dataSource: DataSource,
  text: string,
  values: unknown[],
): Promise<T[]> {
  return runOnPool<T>(dataSource, { name: statementName(text), text, values });
}

/**
 * `runPrepared` whose values are made once the pool has given the statement its connection: for a value read
 * from a clock, which a wait for a connection (a busy pool) must not leave behind (Authority.insertIfConfirmed).
 */
export async function runPreparedOnConnection<T extends QueryResultRow>(
  dataSource: DataSource,
  text: string,
  values: () => unknown[],
): Promise<T[]> {
  const pool = (dataSource.driver as unknown as { master: Pool }).master;
  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    dataSource.logger.logQuery(text);
    return (await client.query<T>({ name: statementName(text), text, values: values() })).rows;
  } catch (error) {
    // As pool.query does: a connection that failed a statement is not given out again.
    failure = error as Error;
    throw error;
  } finally {
    client.release(failure);
  }
}

/**
 * `runPrepared` for the rows of `select` (a statement without a WHERE of its own) whose `column` is one of `ids`
 * (non-empty), the comparison written as oneOrAny writes it (`= $1` for one id, so that PostgreSQL keeps one
 * generic plan for it instead of planning it on every run).
 */
export async function runPreparedForIds<T extends QueryResultRow>(
  dataSource: DataSource,
  statement: { select: string; column: string; ids: readonly string[] },
): Promise<T[]> {
  const where = new SqlWhere().idIn(statement.column, statement.ids);
  return runPrepared<T>(dataSource, `${statement.select} WHERE ${where}`, where.values);
}

/**
 * Runs a read-path query as an unnamed statement, which PostgreSQL plans for the values of each run: for
 * statements whose best plan depends on the values, where the generic plan a prepared statement may settle on
 * after five runs is far off (a substring search: the trigram index for a rare part, walking the list in order
 * for a common one; PostgreSQL cannot tell them apart without the pattern). Counted like runPrepared.
 */
export async function runPlannedEach<T extends QueryResultRow>(
  dataSource: DataSource,
  text: string,
  values: unknown[],
): Promise<T[]> {
  return runOnPool<T>(dataSource, { text, values });
}

/**
 * `runPrepared` (or with `planEach`, `runPlannedEach`) with each row as an array of its columns in the
 * statement's order, not an object: pg builds a row object by spreading a null-prototype template and storing
 * each column by name (about 0.2 us a row); an array is filled by index. For statements of many rows whose
 * columns the caller reads by position (a page of users).
 */
export async function runForArrays<T extends unknown[]>(
  dataSource: DataSource,
  statement: { text: string; values: unknown[]; planEach: boolean },
): Promise<T[]> {
  const { text, values, planEach } = statement;
  const rows = await runOnPool<QueryResultRow>(dataSource, {
    ...(planEach ? {} : { name: statementName(text) }),
    text,
    values,
    rowMode: 'array',
  });
  return rows as unknown as T[];
}

/**
 * `runPrepared` inside a transaction, on the transaction's own connection: for statements every act or
 * batch of key reveals runs (the authority check's locks, the views' insert).
 */
export async function runPreparedIn<T extends QueryResultRow>(
  manager: EntityManager,
  text: string,
  values: unknown[],
): Promise<T[]> {
  if (!manager.queryRunner) return runPrepared<T>(manager.connection, text, values);
  const client = (await manager.queryRunner.connect()) as PoolClient;
  manager.connection.logger.logQuery(text);
  const result = await client.query<T>({ name: statementName(text), text, values });
  return result.rows;
}

/** One statement on TypeORM's pool, logged through the data source's logger (so it is counted). */
async function runOnPool<T extends QueryResultRow>(
  dataSource: DataSource,
  statement: { name?: string; text: string; values: unknown[]; rowMode?: 'array' },
): Promise<T[]> {
  const pool = (dataSource.driver as unknown as { master: Pool }).master;
  dataSource.logger.logQuery(statement.text);
  const result = await pool.query<T>(statement as QueryConfig);
  return result.rows;
}

function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `q_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (statementNames.size < MAX_STATEMENT_NAMES) statementNames.set(text, name);
  }
  return name;
}
