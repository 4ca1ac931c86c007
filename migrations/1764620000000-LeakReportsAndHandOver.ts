import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 18 (leak reports, hand-over visibility):
 * - `access_keys.previous_key_last_used_at`: the last use of the key a grace period keeps working, written
 *   like `last_used_at` (at most once a minute), so an admin sees the old key go quiet;
 * - `access_keys.leak_*`: the latest leak report of the user's keys (when, where, by whom in kind, which key
 *   by hint), kept after later regenerations; the audit log holds every report;
 * - `audit_events.location`: where a reported key was found (ACCESS_KEY_LEAK_REPORTED only), never the key;
 * - `secret_scanning_messages`: SHA-256 digests of the secret scanning messages already processed, so the same
 *   signed message sent again is refused; rows older than the retention are deleted as new messages arrive.
 * None of these columns is in the auth-change trigger's list: writing them must not empty the key caches.
 */
export class LeakReportsAndHandOver1764620000000 implements MigrationInterface {
  name = 'LeakReportsAndHandOver1764620000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE access_keys
        ADD COLUMN previous_key_last_used_at timestamptz,
        ADD COLUMN leak_reported_at timestamptz,
        ADD COLUMN leak_report_location text,
        ADD COLUMN leak_report_source text CHECK (leak_report_source IN ('GITHUB_SECRET_SCANNING', 'ADMIN')),
        ADD COLUMN leaked_key_hint text`);
    await queryRunner.query(`ALTER TABLE audit_events ADD COLUMN location text`);
    await queryRunner.query(`
      CREATE TABLE secret_scanning_messages (
        digest bytea PRIMARY KEY,
        received_at timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`CREATE INDEX secret_scanning_messages_received_at_idx ON secret_scanning_messages (received_at)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE secret_scanning_messages`);
    await queryRunner.query(`ALTER TABLE audit_events DROP COLUMN location`);
    await queryRunner.query(`
      ALTER TABLE access_keys
        DROP COLUMN leaked_key_hint,
        DROP COLUMN leak_report_source,
        DROP COLUMN leak_report_location,
        DROP COLUMN leak_reported_at,
        DROP COLUMN previous_key_last_used_at`);
  }
}
