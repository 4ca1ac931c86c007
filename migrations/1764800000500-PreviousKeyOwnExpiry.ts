import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `access_keys.previous_key_own_expires_at`: the expiry the key a grace period keeps working was issued with
 * (the replaced key's `expires_at`, copied by the regeneration that replaced it). Key expiry is decided by the
 * service's clock, grace periods by PostgreSQL's: folded into `previous_key_expires_at` alone, the replaced key's
 * expiry was compared with PostgreSQL's clock, so with the two clocks apart a replaced key kept working past its
 * own expiry. Checked with the service's clock by the lookup, the auth cache and the act-time check. Rows whose
 * grace period began before this migration have none: their grace period was already capped at that expiry.
 * Not in the auth-change trigger's list: it is written only with `previous_key_digest`, which is.
 */
export class PreviousKeyOwnExpiry1764800000500 implements MigrationInterface {
  name = 'PreviousKeyOwnExpiry1764800000500';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE access_keys ADD COLUMN previous_key_own_expires_at timestamptz`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE access_keys DROP COLUMN previous_key_own_expires_at`);
  }
}
