import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The credential triggers announce a change of every column a credential lookup decides by, so a change an
 * operator makes in SQL reaches every instance's cache. Two were left out: `access_keys.previous_key_own_expires_at`
 * (the replaced key's own expiry, checked by the lookup and carried by the cached principal: shortened in SQL,
 * the replaced key kept authenticating from caches until their entries aged out) and `sessions.user_id` (whose
 * session it is). Neither is written often: the key policy writes the first with `expires_at`, already announced.
 */
export class AnnounceEveryLookupColumn1764800000700 implements MigrationInterface {
  name = 'AnnounceEveryLookupColumn1764800000700';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER access_keys_auth_change ON access_keys`);
    await queryRunner.query(`
      CREATE TRIGGER access_keys_auth_change
      AFTER UPDATE OF key_digest, previous_key_digest, previous_key_expires_at, previous_key_own_expires_at, expires_at,
        user_id OR DELETE ON access_keys
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
    await queryRunner.query(`DROP TRIGGER sessions_auth_change ON sessions`);
    await queryRunner.query(`
      CREATE TRIGGER sessions_auth_change
      AFTER UPDATE OF revoked_at, expires_at, token_digest, user_id OR DELETE ON sessions
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER sessions_auth_change ON sessions`);
    await queryRunner.query(`
      CREATE TRIGGER sessions_auth_change
      AFTER UPDATE OF revoked_at, expires_at, token_digest OR DELETE ON sessions
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
    await queryRunner.query(`DROP TRIGGER access_keys_auth_change ON access_keys`);
    await queryRunner.query(`
      CREATE TRIGGER access_keys_auth_change
      AFTER UPDATE OF key_digest, previous_key_digest, previous_key_expires_at, expires_at, user_id OR DELETE ON access_keys
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
  }
}
