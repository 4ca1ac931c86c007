import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import {
  buildSchema,
  findBreakingChanges,
  findDangerousChanges,
  type GraphQLSchema,
  lexicographicSortSchema,
  printSchema,
} from 'graphql';

/**
 * The GraphQL contract check CI runs: `schema.graphql` (what the code serves) against the last released
 * contract, `contract/schema.released.graphql`, with graphql-js's findBreakingChanges.
 *
 * - Additions pass: later changes add fields, and existing clients never notice them.
 * - A breaking change (a field removed or retyped, a required argument added...) fails, unless the same
 *   change also (1) updates the baseline to the new schema and (2) explains each breaking change in
 *   CHANGELOG.md, under `## Unreleased`, `### Breaking`: one bullet per change that quotes graphql-js's
 *   description of it (the check prints them) followed by why, for example
 *   `- User.email was removed. Clients read it from User.login since 0.3.0.`
 * - Dangerous changes (an enum value or an optional argument added...) pass with a warning.
 *
 * "The same change" is what differs from a base revision (`--base`, default HEAD): the baseline is read from
 * the base, so updating it cannot by itself hide the break. CI passes the branch point with main.
 */

const SCHEMA_FILE = 'schema.graphql';
const BASELINE_FILE = 'contract/schema.released.graphql';
const CHANGELOG_FILE = 'CHANGELOG.md';
/** Words a changelog bullet must carry beyond graphql-js's description: a reason, not just a copy. */
const MIN_REASON_WORDS = 3;

export interface CompatibilityInput {
  /** The released contract as the base revision has it. */
  readonly releasedAtBase: string;
  /** The released contract in this change (updated when the change breaks it). */
  readonly released: string;
  readonly schema: string;
  readonly changelog: string;
}

export interface CompatibilityReport {
  readonly breaking: string[];
  readonly dangerous: string[];
  /** Why the check fails; empty when it passes. */
  readonly problems: string[];
}

const canonical = (schema: GraphQLSchema): string => printSchema(lexicographicSortSchema(schema));

/** The lines of the `### Breaking` subsection of `## Unreleased`, or [] when either heading is missing. */
export function unreleasedBreakingEntries(changelog: string): string[] {
  const unreleased = /^## Unreleased[^\n]*\n([^]*?)(?=^## |(?![^]))/m.exec(changelog)?.[1] ?? '';
  const breaking = /^### Breaking[^\n]*\n([^]*?)(?=^#{2,3} |(?![^]))/m.exec(unreleased)?.[1] ?? '';
  return breaking.split('\n').filter((line) => line.trim().startsWith('-'));
}

/**
 * Compares the schema with the released contract of the base revision. Pure: the CLI below reads the
 * files and git. Throws graphql-js's GraphQLError when a document is not a valid schema.
 */
export function checkCompatibility(input: CompatibilityInput): CompatibilityReport {
  const releasedAtBase = buildSchema(input.releasedAtBase);
  const schema = buildSchema(input.schema);
  const breaking = findBreakingChanges(releasedAtBase, schema).map((change) => change.description);
  const dangerous = findDangerousChanges(releasedAtBase, schema).map((change) => change.description);
  const problems: string[] = [];
  if (breaking.length > 0) {
    if (canonical(buildSchema(input.released)) !== canonical(schema)) {
      problems.push(`${BASELINE_FILE} was not updated to the new schema in this change (copy ${SCHEMA_FILE} over it).`);
    }
    const entries = unreleasedBreakingEntries(input.changelog);
    for (const description of breaking) {
      const entry = entries.find((line) => line.includes(description));
      const reason =
        entry
          ?.slice(entry.indexOf(description) + description.length)
          .trim()
          .split(/\s+/)
          .filter(Boolean) ?? [];
      if (!entry || reason.length < MIN_REASON_WORDS) {
        problems.push(
          `${CHANGELOG_FILE} does not explain it under "## Unreleased" / "### Breaking": - ${description} <why>`,
        );
      }
    }
  }
  return { breaking, dangerous, problems };
}

function gitShow(root: string, revision: string, file: string): string | null {
  try {
    return execFileSync('git', ['show', `${revision}:${file}`], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return null;
  }
}

function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: { root: { type: 'string' }, base: { type: 'string' } },
    strict: true,
  });
  const root = path.resolve(values.root ?? '.');
  const base = values.base ?? 'HEAD';
  const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');
  const released = read(BASELINE_FILE);
  // A base from before the baseline existed has nothing older to compare with.
  const releasedAtBase = gitShow(root, base, BASELINE_FILE) ?? released;
  const report = checkCompatibility({
    releasedAtBase,
    released,
    schema: read(SCHEMA_FILE),
    changelog: read(CHANGELOG_FILE),
  });

  for (const change of report.dangerous)
    process.stderr.write(`warning: dangerous change to the GraphQL contract: ${change}\n`);
  if (report.breaking.length === 0) {
    process.stdout.write(`GraphQL contract: compatible with ${BASELINE_FILE} at ${base}.\n`);
    return 0;
  }
  process.stderr.write(
    `GraphQL contract: ${report.breaking.length} breaking change(s) since ${BASELINE_FILE} at ${base}:\n`,
  );
  for (const change of report.breaking) process.stderr.write(`  - ${change}\n`);
  if (report.problems.length === 0) {
    process.stdout.write(
      'GraphQL contract: the breaking changes are released deliberately (baseline updated, CHANGELOG explains them).\n',
    );
    return 0;
  }
  process.stderr.write('Existing clients would break. Undo the change, or release it deliberately:\n');
  for (const problem of report.problems) process.stderr.write(`  * ${problem}\n`);
  return 1;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`schema check failed: ${(error as Error).message}\n`);
    process.exitCode = 2;
  }
}
