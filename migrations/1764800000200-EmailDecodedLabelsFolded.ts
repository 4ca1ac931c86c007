import { domainToUnicode } from 'node:url';
import { MigrationInterface, QueryRunner } from 'typeorm';

import { rewriteEmails } from './rewrite-emails';

/** Trimmed, NFKC, lower case (full Unicode), Greek final sigma as σ. */
function fold(text: string): string {
  return text
    .trim()
    .normalize('NFKC')
    .toLowerCase()
    .normalize('NFKC')
    .replace(/\u03c2/g, '\u03c3');
}

/**
 * The form emails are now stored in (src/users/user.validation.ts canonicalEmail), written out here so this
 * migration keeps meaning what it meant when later code changes: as EmailFinalSigmaAndIdn, but IDNA's ideographic
 * full stop (U+3002) is a dot, and each punycode label is decoded on its own and folded as typed text is. Before,
 * a decoded label was only NFKC'd (`xn--pxavbm` stayed "οδος" with its final sigma, `xn--58d` a capital Cherokee
 * letter) and "x。y.example" was a domain of its own, so updateUser stored twins of existing addresses, and
 * sign-in found one or the other by the form typed.
 */
function canonical(email: string): string {
  const folded = fold(email);
  const at = folded.lastIndexOf('@');
  if (at < 0) return folded;
  const labels = folded
    .slice(at + 1)
    .replace(/\u3002/g, '.')
    .split('.')
    .map((label) => (label.startsWith('xn--') ? fold(domainToUnicode(label)) || label : label));
  return `${folded.slice(0, at + 1)}${labels.join('.')}`;
}

/**
 * Rewrites stored emails into the new form; as in NormalizeEmails, rows whose forms now coincide (or coincide
 * with a row already in that form) are left as they are for an admin to settle. Not undone on the way down.
 */
export class EmailDecodedLabelsFolded1764800000200 implements MigrationInterface {
  name = 'EmailDecodedLabelsFolded1764800000200';

  async up(queryRunner: QueryRunner): Promise<void> {
    await rewriteEmails(queryRunner, canonical);
  }

  async down(): Promise<void> {
    // Nothing to undo: see the class comment.
  }
}
