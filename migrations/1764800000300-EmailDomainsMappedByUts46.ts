import { domainToUnicode } from 'node:url';
import { MigrationInterface, QueryRunner } from 'typeorm';

import { rewriteEmails } from './rewrite-emails';

/** NFKC, lower case (full Unicode), Greek final sigma as σ. */
function fold(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .normalize('NFKC')
    .replace(/\u03c2/g, '\u03c3');
}

/** A domain label as UTS 46 maps it, or '' where it refuses it (beside a letter label: "123" alone is IPv4). */
function uts46Label(label: string): string {
  const mapped = domainToUnicode(`${label}.a`);
  return mapped.endsWith('.a') ? mapped.slice(0, -2) : '';
}

/**
 * The form emails are now stored in (src/users/user.validation.ts canonicalEmail), written out here so this
 * migration keeps meaning what it meant when later code changes: as EmailDecodedLabelsFolded, but every domain
 * label (not only a punycode one) is first mapped as UTS 46 maps it, then folded. NFKC and lower case stop short
 * of UTS 46: "ᾳ.example" and "αι.example" (or "ᲀ.example" and "в.example") are one DNS name that was stored twice,
 * and "ẞ.example", the DNS name "ss.example" under UTS 46 before 15.1 (Node 20 and 22; "ß.example" in Node 24,
 * whose tables are newer), was stored as "ß.example".
 */
function canonical(email: string): string {
  const typed = email.trim().normalize('NFKC');
  const at = typed.lastIndexOf('@');
  if (at < 0) return fold(typed);
  const labels = typed
    .slice(at + 1)
    .replace(/\u3002/g, '.')
    .split('.')
    .map((label) => fold(uts46Label(label)) || fold(label));
  return `${fold(typed.slice(0, at + 1))}${labels.join('.')}`;
}

/**
 * Rewrites stored emails into the new form; as in NormalizeEmails, rows whose forms now coincide (or coincide
 * with a row already in that form) are left as they are for an admin to settle. Not undone on the way down.
 */
export class EmailDomainsMappedByUts461764800000300 implements MigrationInterface {
  name = 'EmailDomainsMappedByUts461764800000300';

  async up(queryRunner: QueryRunner): Promise<void> {
    await rewriteEmails(queryRunner, canonical);
  }

  async down(): Promise<void> {
    // Nothing to undo: see the class comment.
  }
}
