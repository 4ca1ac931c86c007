import { MigrationInterface, QueryRunner } from 'typeorm';

const TABLES = ['access_keys', 'sessions', 'users', 'organizations'];

/**
 * Row triggers do not fire on TRUNCATE, so emptying a credential table (an operator's clean-up, a restore)
 * went unannounced and instances kept serving the credentials it removed from their caches. A statement
 * trigger announces it with a payload that names nobody, which every instance reads as "forget everything".
 */
export class AuthTruncateNotifications1764400000000 implements MigrationInterface {
  name = 'AuthTruncateNotifications1764400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION crm_access_notify_auth_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('crm_access_auth_changes', '{}');
        RETURN NULL;
      END $$`);
    for (const table of TABLES) {
      await queryRunner.query(`
        CREATE TRIGGER ${table}_auth_truncate AFTER TRUNCATE ON ${table}
        FOR EACH STATEMENT EXECUTE FUNCTION crm_access_notify_auth_truncate()`);
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of TABLES) await queryRunner.query(`DROP TRIGGER ${table}_auth_truncate ON ${table}`);
    await queryRunner.query(`DROP FUNCTION crm_access_notify_auth_truncate()`);
  }
}
