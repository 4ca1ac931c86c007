import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Review B (starvation): acts and key reveals lock their organization's row FOR KEY SHARE, so a role change or
 * deactivation (FOR NO KEY UPDATE on that row) no longer makes every other admin of the organization wait.
 * Deactivating an organization must still wait for the acts under way and hold back new ones: a unique index
 * over (id, is_active) makes PostgreSQL take FOR UPDATE (which conflicts with FOR KEY SHARE) for any UPDATE
 * that changes `is_active`, by SQL or otherwise, as it does for a change of any column of a unique index.
 * The index is unique trivially (id is the primary key); it exists for its lock mode.
 */
export class OrganizationActiveKey1764800000000 implements MigrationInterface {
  name = 'OrganizationActiveKey1764800000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE UNIQUE INDEX organizations_id_is_active_key ON organizations (id, is_active)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX organizations_id_is_active_key`);
  }
}
