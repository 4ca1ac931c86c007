import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Per organization, role and active flag: how many users there are, kept by triggers in the transaction of each
 * change of a user, so `users { totalCount }` of a whole organization (or of a role/active filter) is exact and
 * costs one index lookup at any size instead of counting the organization's rows (issue 17; docs/performance.md).
 *
 * Locking: a statement that adds, removes or moves users (a role change, a deactivation) holds the count rows it
 * changed until it commits, so such changes in one organization with the same role and active flag commit one
 * after another (they are short); renames and password changes write no count. No foreign key: deleting an
 * organization deletes its users, whose trigger takes its counts to zero in the same statement.
 */
export class UserCounts1764700100000 implements MigrationInterface {
  name = 'UserCounts1764700100000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE organization_user_counts (
        organization_id uuid NOT NULL,
        role text NOT NULL,
        is_active boolean NOT NULL,
        users integer NOT NULL,
        PRIMARY KEY (organization_id, role, is_active)
      )`);
    // Statement-level triggers with transition tables: one upsert per count row per statement, however many
    // users it changes (a row-level trigger would update the same count row once per user, and PostgreSQL
    // walks every earlier version of a row the transaction updated: quadratic for a bulk insert or an
    // organization's deletion). Rows are upserted in key order, so two statements never wait crosswise.
    await queryRunner.query(`
      CREATE FUNCTION crm_access_count_users() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'TRUNCATE' THEN
          DELETE FROM organization_user_counts;
        ELSIF TG_OP = 'INSERT' THEN
          INSERT INTO organization_user_counts AS c (organization_id, role, is_active, users)
          SELECT organization_id, role, is_active, count(*) FROM changed_new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
          ON CONFLICT (organization_id, role, is_active) DO UPDATE SET users = c.users + EXCLUDED.users;
        ELSIF TG_OP = 'DELETE' THEN
          INSERT INTO organization_user_counts AS c (organization_id, role, is_active, users)
          SELECT organization_id, role, is_active, -count(*) FROM changed_old GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
          ON CONFLICT (organization_id, role, is_active) DO UPDATE SET users = c.users + EXCLUDED.users;
        ELSE
          -- Most updates (a name, a password) move nobody: then nothing is written and no count row locked.
          INSERT INTO organization_user_counts AS c (organization_id, role, is_active, users)
          SELECT organization_id, role, is_active, sum(delta) FROM (
            SELECT organization_id, role, is_active, 1 AS delta FROM changed_new
            UNION ALL
            SELECT organization_id, role, is_active, -1 FROM changed_old
          ) AS moves GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
          ON CONFLICT (organization_id, role, is_active) DO UPDATE SET users = c.users + EXCLUDED.users;
        END IF;
        RETURN NULL;
      END $$`);
    await queryRunner.query(`
      CREATE TRIGGER users_count_insert AFTER INSERT ON users REFERENCING NEW TABLE AS changed_new
      FOR EACH STATEMENT EXECUTE FUNCTION crm_access_count_users()`);
    await queryRunner.query(`
      CREATE TRIGGER users_count_update AFTER UPDATE ON users REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
      FOR EACH STATEMENT EXECUTE FUNCTION crm_access_count_users()`);
    await queryRunner.query(`
      CREATE TRIGGER users_count_delete AFTER DELETE ON users REFERENCING OLD TABLE AS changed_old
      FOR EACH STATEMENT EXECUTE FUNCTION crm_access_count_users()`);
    await queryRunner.query(`CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION crm_access_count_users()`);
    // CREATE TRIGGER holds writes to users off until this migration commits: no change slips between this
    // count and the triggers taking over.
    await queryRunner.query(`
      INSERT INTO organization_user_counts (organization_id, role, is_active, users)
      SELECT organization_id, role, is_active, count(*) FROM users GROUP BY 1, 2, 3`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const trigger of ['users_count_truncate', 'users_count_delete', 'users_count_update', 'users_count_insert']) {
      await queryRunner.query(`DROP TRIGGER ${trigger} ON users`);
    }
    await queryRunner.query(`DROP FUNCTION crm_access_count_users()`);
    await queryRunner.query(`DROP TABLE organization_user_counts`);
  }
}
