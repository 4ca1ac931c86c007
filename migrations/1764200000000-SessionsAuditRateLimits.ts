import { MigrationInterface, QueryRunner } from 'typeorm';

export class SessionsAuditRateLimits1764200000000 implements MigrationInterface {
  name = 'SessionsAuditRateLimits1764200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE sessions (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_digest bytea NOT NULL CONSTRAINT sessions_token_digest_key UNIQUE,
        expires_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )`);
    await queryRunner.query(`CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE revoked_at IS NULL`);
    await queryRunner.query(`
      CREATE TABLE audit_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        -- Null only for a failed sign-in with an email nobody has: there is no organization to file it under.
        organization_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
        action text NOT NULL,
        actor_user_id uuid REFERENCES users(id) ON DELETE SET NULL,
        actor_kind text NOT NULL CHECK (actor_kind IN ('SESSION', 'ACCESS_KEY', 'SYSTEM')),
        target_user_id uuid REFERENCES users(id) ON DELETE SET NULL,
        ip text,
        request_id text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    // The audit log is read per organization, newest first, by cursor.
    await queryRunner.query(
      `CREATE INDEX audit_events_organization_created_idx ON audit_events (organization_id, created_at DESC, id DESC)`,
    );
    // Failed authentications per client address, shared by every instance (fixed window).
    await queryRunner.query(`
      CREATE TABLE auth_failures (
        client text PRIMARY KEY,
        window_started_at timestamptz NOT NULL,
        failures integer NOT NULL
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE auth_failures`);
    await queryRunner.query(`DROP TABLE audit_events`);
    await queryRunner.query(`DROP TABLE sessions`);
  }
}
