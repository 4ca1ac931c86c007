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
 * Plain CREATE INDEX (in the migration's transaction): on a large existing audit log this holds writes to the
 * table while the index builds; an operator with millions of rows may prefer to build them CONCURRENTLY
 * beforehand under these names, which the IF NOT EXISTS then keeps.
 */
export class ScaleIndexes1764700000000 implements MigrationInterface {
  name = 'ScaleIndexes1764700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS audit_events_organization_id_idx ON audit_events (organization_id, id)`);
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS audit_events_organization_action_idx ON audit_events (organization_id, action, id)`,
    );
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS audit_events_organization_actor_idx ON audit_events (organization_id, actor_user_id, id)`,
    );
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS audit_events_organization_target_idx ON audit_events (organization_id, target_user_id, id)`,
    );
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS audit_events_created_at_idx ON audit_events (created_at)`);

    const [{ available }] = await queryRunner.query(
      `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') AS available`,
    );
    if (!available) return;
    await queryRunner.query(`CREATE EXTENSION IF NOT EXISTS pg_trgm`);
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS users_name_trgm_idx ON users USING gin (name gin_trgm_ops)`);
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS users_email_trgm_idx ON users USING gin (email gin_trgm_ops)`);
  }

  /** Drops the indexes; the pg_trgm extension stays (other schemas may use it, and it holds no data). */
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
