import type { QueryRunner } from 'typeorm';

/**
 * Rewrites every stored email into `canonical(email)` (each email migration passes the form of its day, written
 * out in it). Rows whose forms coincide, with each other or with a row already in that form, are left exactly as
 * they are: which one keeps the address is an admin's decision (updateUser renames one), and until then those
 * users sign in with their keys, not by email. Reads every user once; writes only the rows that change.
 */
export async function rewriteEmails(queryRunner: QueryRunner, canonical: (email: string) => string): Promise<void> {
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
