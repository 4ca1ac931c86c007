import type { QueryRunner } from 'typeorm';

/**
 * Rewrites every stored email into `canonical(email)` (each email migration passes the form of its day, written
 * out in it). Rows whose forms coincide, with each other or with a row already in that form, are left exactly as
 * they are: which one keeps the address is an admin's decision (updateUser renames one), and until then those
 * users sign in with their keys, not by email. Reads every user once; writes only the rows that change.
 * Runs in the migration's transaction (migrationsTransactionMode 'each'), first taking a SHARE lock on users: an
 * instance of the previous build that serves meanwhile has its user writes wait until the migration commits (its
 * reads, sign-ins among them, go on), and a user written as the migration starts is waited for and read, so that
 * it is never a twin the read missed (the rewrite into its form failed on the unique index, stopping startup) nor
 * an email left in an older form.
 */
export async function rewriteEmails(queryRunner: QueryRunner, canonical: (email: string) => string): Promise<void> {
  await queryRunner.query(`LOCK TABLE users IN SHARE MODE`);
  const rows: Array<{ id: string; email: string }> = await queryRunner.query(`SELECT id, email FROM users`);
  const byNormalForm = new Map<string, Array<{ id: string; email: string }>>();
  for (const row of rows) {
    const normal = canonical(row.email);
    const group = byNormalForm.get(normal);
    if (group) group.push(row);
    else byNormalForm.set(normal, [row]);
  }
  for (const [normal, group] of byNormalForm) {
    if (group.length !== 1 || group[0].email === normal) continue;
    await queryRunner.query(`UPDATE users SET email = $2 WHERE id = $1`, [group[0].id, normal]);
  }
}
