import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `access_keys.previous_key_created_at`: when the key a grace period keeps working was issued (the replaced
 * key's `created_at`, copied by the regeneration that replaced it). A key policy applied to existing keys
 * counts every key's age from its creation, the replaced one included; without this column the replaced key
 * kept working until the end of its grace period however old it was. Rows whose grace period began before
 * this migration have no creation time: a policy applied to existing keys treats their replaced key as older
 * than any age (its grace period ends then), not as young as the key that replaced it.
 * Not in the auth-change trigger's list: it is written only with `previous_key_digest`, which is.
 */
export class PreviousKeyCreatedAt1764800000400 implements MigrationInterface {
  name = 'PreviousKeyCreatedAt1764800000400';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE access_keys ADD COLUMN previous_key_created_at timestamptz`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE access_keys DROP COLUMN previous_key_created_at`);
  }
}
