import { MigrationInterface, QueryRunner } from 'typeorm';

export class Initial1764100000000 implements MigrationInterface {
  name = 'Initial1764100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE organizations (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL,
        is_active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`
      CREATE TABLE users (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        email text NOT NULL,
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        role text NOT NULL CHECK (role IN ('ADMIN', 'MANAGER', 'MEMBER')),
        is_active boolean NOT NULL DEFAULT true,
        password_hash text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    // The email is the login name: unique whatever its letter case, across every organization.
    await queryRunner.query(`CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email))`);
    // Serves the Manage Users list: one organization, ordered by name then id (the cursor).
    await queryRunner.query(`CREATE INDEX users_organization_name_idx ON users (organization_id, name, id)`);
    await queryRunner.query(`
      CREATE TABLE access_keys (
        user_id uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        key_digest bytea NOT NULL CONSTRAINT access_keys_key_digest_key UNIQUE,
        key_ciphertext bytea NOT NULL,
        key_hint text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by uuid REFERENCES users(id) ON DELETE SET NULL,
        last_used_at timestamptz,
        previous_key_digest bytea,
        previous_key_expires_at timestamptz,
        CHECK ((previous_key_digest IS NULL) = (previous_key_expires_at IS NULL))
      )`);
    await queryRunner.query(
      `CREATE INDEX access_keys_previous_key_digest_idx ON access_keys (previous_key_digest)
       WHERE previous_key_digest IS NOT NULL`,
    );
    // One row: the fingerprint of ACCESS_KEY_SECRET, so a wrong secret is refused at startup.
    await queryRunner.query(`
      CREATE TABLE key_secret_fingerprint (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        fingerprint bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE key_secret_fingerprint`);
    await queryRunner.query(`DROP TABLE access_keys`);
    await queryRunner.query(`DROP TABLE users`);
    await queryRunner.query(`DROP TABLE organizations`);
  }
}
