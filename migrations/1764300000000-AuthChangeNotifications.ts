import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every change that can end or alter a credential NOTIFYs `crm_access_auth_changes` from the database
 * itself, so each instance's key cache hears of it whoever made the change (this service, another
 * version of it, or an operator in psql). PostgreSQL delivers the notification when the change commits.
 * The trigger arguments name the payload field and the column it comes from.
 */
export class AuthChangeNotifications1764300000000 implements MigrationInterface {
  name = 'AuthChangeNotifications1764300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION crm_access_notify_auth_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('crm_access_auth_changes', json_build_object(TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[1])::text);
        RETURN NULL;
      END $$`);
    // Not on last_used_at alone: recording use must not empty the caches it is meant to spare.
    await queryRunner.query(`
      CREATE TRIGGER access_keys_auth_change
      AFTER UPDATE OF key_digest, previous_key_digest, previous_key_expires_at, user_id OR DELETE ON access_keys
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
    await queryRunner.query(`
      CREATE TRIGGER sessions_auth_change
      AFTER UPDATE OF revoked_at, expires_at, token_digest OR DELETE ON sessions
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
    // Any change to a user: cached principals carry the profile that `me` answers with.
    await queryRunner.query(`
      CREATE TRIGGER users_auth_change AFTER UPDATE OR DELETE ON users
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'id')`);
    await queryRunner.query(`
      CREATE TRIGGER organizations_auth_change AFTER UPDATE OR DELETE ON organizations
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('organizationId', 'id')`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER organizations_auth_change ON organizations`);
    await queryRunner.query(`DROP TRIGGER users_auth_change ON users`);
    await queryRunner.query(`DROP TRIGGER sessions_auth_change ON sessions`);
    await queryRunner.query(`DROP TRIGGER access_keys_auth_change ON access_keys`);
    await queryRunner.query(`DROP FUNCTION crm_access_notify_auth_change()`);
  }
}
