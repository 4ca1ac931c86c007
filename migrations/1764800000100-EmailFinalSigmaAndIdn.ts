import { domainToUnicode } from 'node:url';
import { MigrationInterface, QueryRunner } from 'typeorm';

import { rewriteEmails } from './rewrite-emails';

/**
 * The form emails are now stored in (src/users/user.validation.ts canonicalEmail), written out here so this
 * migration keeps meaning what it meant when later code changes: as NormalizeEmails, plus Greek final sigma
 * folded into σ (case folding; "οδος" and "οδοσ" are one address) and a punycode domain in its Unicode form
 * ("xn--bcher-kva.example" is "bücher.example").
 */
function canonical(email: string): string {
  const folded = email.trim().normalize('NFKC').toLowerCase().normalize('NFKC').replace(/\u03c2/g, '\u03c3');
  const at = folded.lastIndexOf('@');
  if (at < 0 || !/(^|\.)xn--/.test(folded.slice(at + 1))) return folded;
  const unicode = domainToUnicode(folded.slice(at + 1));
  return unicode ? `${folded.slice(0, at + 1)}${unicode.normalize('NFKC')}` : folded;
}

/**
 * Rewrites stored emails into the new form; as in NormalizeEmails, rows whose forms now coincide (or coincide
 * with a row already in that form) are left as they are for an admin to settle. Not undone on the way down.
 */
export class EmailFinalSigmaAndIdn1764800000100 implements MigrationInterface {
  name = 'EmailFinalSigmaAndIdn1764800000100';

  async up(queryRunner: QueryRunner): Promise<void> {
    await rewriteEmails(queryRunner, canonical);
  }

  async down(): Promise<void> {
    // Nothing to undo: see the class comment.
  }
}
