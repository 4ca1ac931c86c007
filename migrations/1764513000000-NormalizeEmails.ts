import { MigrationInterface, QueryRunner } from 'typeorm';

import { rewriteEmails } from './rewrite-emails';

/**
 * The form emails are now stored in (src/users/user.validation.ts canonicalEmail), written out here so this
 * migration keeps meaning what it meant when later code changes.
 */
function canonical(email: string): string {
  return email.trim().normalize('NFKC').toLowerCase().normalize('NFKC');
}

/**
 * Emails are stored in one normal form (NFKC, lower case) and looked up in it, so rows written before that are
 * rewritten into it. Rows whose normal forms coincide (look-alike duplicates that the old rules let in) are
 * left exactly as they are: which one keeps the address is an admin's decision (updateUser renames one), and
 * until then those users sign in with their keys, not by email. Not undone on the way down: the old rules
 * accepted the normal form too.
 */
export class NormalizeEmails1764513000000 implements MigrationInterface {
  name = 'NormalizeEmails1764513000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await rewriteEmails(queryRunner, canonical);
  }

  async down(): Promise<void> {
    // Nothing to undo: see the class comment.
  }
}
