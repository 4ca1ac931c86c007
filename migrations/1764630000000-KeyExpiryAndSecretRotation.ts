import { MigrationInterface, QueryRunner } from 'typeorm';

/** Bounds of an organization's maxKeyAgeDays; the service checks them first, with a clearer message. */
const MAX_KEY_AGE_DAYS_LIMIT = 3650;

/**
 * Expiry by policy and a rotatable master secret (issue 18).
 * - `organizations.max_key_age_days`: null, keys never expire; else keys issued from then on expire that many
 *   days after issue.
 * - `access_keys.expires_at`: the key's own expiry, stored on the row so a lookup needs nothing else.
 * - `access_keys.secret_fingerprint`: the fingerprint of the master secret the row's key is encrypted and
 *   digested under, so `rotate-secret` knows which rows are left (and a rerun after a crash continues with
 *   them). Existing rows are under the secret the database was set up with.
 * The credential trigger also announces a change of `expires_at` (a policy applied to existing keys).
 */
export class KeyExpiryAndSecretRotation1764630000000 implements MigrationInterface {
  name = 'KeyExpiryAndSecretRotation1764630000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE organizations ADD COLUMN max_key_age_days integer
         CHECK (max_key_age_days BETWEEN 1 AND ${MAX_KEY_AGE_DAYS_LIMIT})`,
    );
    await queryRunner.query(`ALTER TABLE access_keys ADD COLUMN expires_at timestamptz, ADD COLUMN secret_fingerprint bytea`);
    await queryRunner.query(`UPDATE access_keys SET secret_fingerprint = (SELECT fingerprint FROM key_secret_fingerprint WHERE id)`);
    await queryRunner.query(`CREATE INDEX access_keys_expires_at ON access_keys (expires_at) WHERE expires_at IS NOT NULL`);
    await queryRunner.query(`DROP TRIGGER access_keys_auth_change ON access_keys`);
    await queryRunner.query(`
      CREATE TRIGGER access_keys_auth_change
      AFTER UPDATE OF key_digest, previous_key_digest, previous_key_expires_at, expires_at, user_id OR DELETE ON access_keys
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER access_keys_auth_change ON access_keys`);
    await queryRunner.query(`
      CREATE TRIGGER access_keys_auth_change
      AFTER UPDATE OF key_digest, previous_key_digest, previous_key_expires_at, user_id OR DELETE ON access_keys
      FOR EACH ROW EXECUTE FUNCTION crm_access_notify_auth_change('userId', 'user_id')`);
    await queryRunner.query(`DROP INDEX access_keys_expires_at`);
    await queryRunner.query(`ALTER TABLE access_keys DROP COLUMN expires_at, DROP COLUMN secret_fingerprint`);
    await queryRunner.query(`ALTER TABLE organizations DROP COLUMN max_key_age_days`);
  }
}
