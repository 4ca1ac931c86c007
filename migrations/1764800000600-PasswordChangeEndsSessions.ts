import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A password change ends the sessions signed in with the old password, whoever changes it. `changePassword` did
 * it in its own code, so a password an operator reset or cleared in SQL (there is no API for an admin to reset
 * one: that is how a compromised person's password is taken back) left every session of the old one working.
 * The database does it now, in the change's own statement: an UPDATE that changes `password_hash` ends the user's
 * sessions, except the one named by the transaction's `crm_access.session_kept` setting (the session that made
 * the change through `changePassword`, which stays signed in). Ended as a sign-out ends one (`revoked_at`), so the
 * sessions trigger announces it to every instance, and an act in flight with such a session, whose check locks
 * the user's row and the session's, is ordered against it: it committed first, or it is refused.
 */
export class PasswordChangeEndsSessions1764800000600 implements MigrationInterface {
  name = 'PasswordChangeEndsSessions1764800000600';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION crm_access_end_sessions_of_old_password() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE sessions SET revoked_at = now()
         WHERE user_id = NEW.id AND revoked_at IS NULL
           AND id IS DISTINCT FROM NULLIF(current_setting('crm_access.session_kept', true), '')::uuid;
        RETURN NULL;
      END $$`);
    await queryRunner.query(`
      CREATE TRIGGER users_password_change_ends_sessions AFTER UPDATE OF password_hash ON users
      FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
      EXECUTE FUNCTION crm_access_end_sessions_of_old_password()`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER users_password_change_ends_sessions ON users`);
    await queryRunner.query(`DROP FUNCTION crm_access_end_sessions_of_old_password()`);
  }
}
