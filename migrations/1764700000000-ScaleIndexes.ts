import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Indexes for reads that must stay fast as an organization grows (issue 17):
 * - the audit log is paged newest first by id within one organization (src/audit/audit.service.ts), with or
 *   without one of its equality filters, so each filter has an (organization_id, <filter>, id) index that the
 *   page walks backwards and stops after `first + 1` rows; retention deletes by created_at across
 *   organizations, so that has an index of its own;
 * - the users list searches by part of a name or an email (ILIKE '%...%'): trigram GIN indexes serve it when
 *   the server offers pg_trgm (PostgreSQL's contrib; the machine's PostgreSQL 15 and the embedded one both ship
 *   it). Where it is not offered the migration leaves them out and the search still works, by scanning.
 *
 * Built CONCURRENTLY, outside a transaction (`transaction = false`: TypeORM's MigrationExecutor runs such a
 * migration without one in the service's 'each' mode, and refuses it in 'all' mode): a plain CREATE INDEX holds
 * writes to its table for the whole build, and every key reveal writes an audit row, so on an audit log of
 * millions of rows the running instances would stall for minutes. A concurrent build waits for the
 * transactions that write to the table to end instead, and lets new writes through meanwhile. The migration
 * runs with no statement_timeout (runMigrationsLocked, src/db/runtime.ts).
 *
 * A concurrent build that failed or was cancelled (say an earlier run of this migration) leaves its index
 * behind INVALID (pg_index.indisvalid): unused by queries yet maintained on every write, and kept by IF NOT
 * EXISTS. So an invalid index of one of these names is dropped (DROP INDEX CONCURRENTLY) and built again; a
 * valid one, for instance built by an operator beforehand, is kept.
 */
export class ScaleIndexes1764700000000 implements MigrationInterface {
  name = 'ScaleIndexes1764700000000';
  transaction = false;

  async up(queryRunner: QueryRunner): Promise<void> {
    await createIndex(queryRunner, 'audit_events_organization_id_idx', 'audit_events (organization_id, id)');
    await createIndex(
      queryRunner,
      'audit_events_organization_action_idx',
      'audit_events (organization_id, action, id)',
    );
    await createIndex(
      queryRunner,
      'audit_events_organization_actor_idx',
      'audit_events (organization_id, actor_user_id, id)',
    );
    await createIndex(
      queryRunner,
      'audit_events_organization_target_idx',
      'audit_events (organization_id, target_user_id, id)',
    );
    await createIndex(queryRunner, 'audit_events_created_at_idx', 'audit_events (created_at)');

    const [{ available }] = await queryRunner.query(
      `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') AS available`,
    );
    if (!available) return;
    await queryRunner.query(`CREATE EXTENSION IF NOT EXISTS pg_trgm`);
    await createIndex(queryRunner, 'users_name_trgm_idx', 'users USING gin (name gin_trgm_ops)');
    await createIndex(queryRunner, 'users_email_trgm_idx', 'users USING gin (email gin_trgm_ops)');
  }

  /**
   * Drops the indexes; the pg_trgm extension stays (other schemas may use it, and it holds no data). Plain DROP
   * INDEX, which holds the table only for a moment: TypeORM reverts a migration in a transaction whatever its
   * `transaction` says (MigrationExecutor.undoLastMigration), where CONCURRENTLY is refused.
   */
  async down(queryRunner: QueryRunner): Promise<void> {
    for (const index of [
      'users_email_trgm_idx',
      'users_name_trgm_idx',
      'audit_events_created_at_idx',
      'audit_events_organization_target_idx',
      'audit_events_organization_actor_idx',
      'audit_events_organization_action_idx',
      'audit_events_organization_id_idx',
    ]) {
      await queryRunner.query(`DROP INDEX IF EXISTS ${index}`);
    }
  }
}

/**
 * CREATE INDEX CONCURRENTLY IF NOT EXISTS `name` ON `definition` (a table and its columns, as SQL), first
 * dropping (CONCURRENTLY) an index of that name on the search path that an earlier failed build left invalid.
 * Must run outside a transaction (PostgreSQL refuses either statement in one). Throws what the database threw;
 * a build that fails leaves its index invalid, which the next run replaces.
 */
async function createIndex(queryRunner: QueryRunner, name: string, definition: string): Promise<void> {
  const [leftover] = await queryRunner.query(
    `SELECT indexrelid::regclass::text AS qualified FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid`,
    [name],
  );
  if (leftover) await queryRunner.query(`DROP INDEX CONCURRENTLY IF EXISTS ${leftover.qualified}`);
  await queryRunner.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${definition}`);
}
