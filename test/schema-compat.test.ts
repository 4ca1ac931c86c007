import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  type EnumTypeDefinitionNode,
  type FieldDefinitionNode,
  type ObjectTypeDefinitionNode,
  parse,
  print,
  visit,
} from 'graphql';

import { checkCompatibility, unreleasedBreakingEntries } from '../scripts/schema-compat';

/**
 * The GraphQL contract check (scripts/schema-compat.ts), run as CI runs it, on scripted changes in a
 * temporary git repository holding copies of the contract files: the working tree is never touched.
 */
const ROOT = path.join(__dirname, '..');
const SCRIPT = path.join(ROOT, 'dist', 'scripts', 'schema-compat.js');
const SCHEMA = fs.readFileSync(path.join(ROOT, 'schema.graphql'), 'utf8');
const CHANGELOG =
  '# Changelog\n\n## Unreleased\n\n### Added\n- Things.\n\n### Breaking\n- None.\n\n## 0.1.0 - 2026-11-26\n\nFirst release.\n';

/**
 * The schema with the fields of one object type changed by `change`: edited as a document, so the scripted
 * changes keep working whatever fields later changes add around them.
 */
function changeFields(
  typeName: string,
  change: (fields: readonly FieldDefinitionNode[]) => FieldDefinitionNode[],
): string {
  let found = false;
  const document = visit(parse(SCHEMA), {
    ObjectTypeDefinition(node: ObjectTypeDefinitionNode) {
      if (node.name.value !== typeName) return undefined;
      found = true;
      return { ...node, fields: change(node.fields ?? []) };
    },
  });
  expect(found).toBe(true);
  return print(document);
}

const field = (text: string): FieldDefinitionNode =>
  (parse(`type T { ${text} }`).definitions[0] as ObjectTypeDefinitionNode).fields![0];
const removeEmail = () => changeFields('User', (fields) => fields.filter((f) => f.name.value !== 'email'));
const explainRemoval = (changelog: string) =>
  changelog.replace(
    '### Breaking\n- None.\n',
    '### Breaking\n- User.email was removed. Sign-in names moved to User.login in 0.2.0.\n',
  );

describe('the GraphQL contract check', () => {
  let repo: string;
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=ci', '-c', 'user.email=ci@example.test', ...args], {
      cwd: repo,
      stdio: 'pipe',
    });
  const write = (file: string, text: string) => fs.writeFileSync(path.join(repo, file), text);
  const check = () => spawnSync(process.execPath, [SCRIPT, '--root', repo, '--base', 'HEAD'], { encoding: 'utf8' });

  beforeAll(() => {
    repo = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-contract-'));
    fs.mkdirSync(path.join(repo, 'contract'));
    git('init', '-q');
    write('schema.graphql', SCHEMA);
    write('contract/schema.released.graphql', SCHEMA);
    write('CHANGELOG.md', CHANGELOG);
    git('add', '.');
    git('commit', '-qm', 'released contract');
  });
  beforeEach(() => git('checkout', '-q', '--', '.'));
  afterAll(() => fs.rmSync(repo, { recursive: true, force: true }));

  it("passes on this repository's own schema, baseline and CHANGELOG", () => {
    const run = spawnSync(process.execPath, [SCRIPT, '--root', ROOT, '--base', 'HEAD'], { encoding: 'utf8' });
    expect(run.status).toBe(0);
  });

  it('passes on an additive change (a new field, a new type), with nothing else to do', () => {
    const added = changeFields('Organization', (fields) => [
      ...fields,
      field('slug: String'),
      field('teams(first: Int): [String!]'),
    ]);
    write('schema.graphql', `${added}\n\ntype Team {\n  id: ID!\n}\n`);
    const run = check();
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/compatible/);
    expect(run.status).toBe(0);
  });

  it('fails on a breaking change (a field removed), naming it and what a deliberate release needs', () => {
    write('schema.graphql', removeEmail());
    const run = check();
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/1 breaking change\(s\)[^]*- User\.email was removed\./);
    expect(run.stderr).toMatch(/contract\/schema\.released\.graphql was not updated/);
    expect(run.stderr).toMatch(/CHANGELOG\.md does not explain it[^]*- User\.email was removed\. <why>/);
  });

  it('fails on a field retyped, even with the baseline updated, while CHANGELOG does not say why', () => {
    const retyped = changeFields('User', (fields) =>
      fields.map((f) => (f.name.value === 'isActive' ? field('isActive: String!') : f)),
    );
    write('schema.graphql', retyped);
    write('contract/schema.released.graphql', retyped);
    const run = check();
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/User\.isActive changed type from Boolean! to String!/);
    expect(run.stderr).not.toMatch(/was not updated/);
  });

  it('fails when CHANGELOG explains the break but the baseline still holds the old contract', () => {
    write('schema.graphql', removeEmail());
    write('CHANGELOG.md', explainRemoval(CHANGELOG));
    const run = check();
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/was not updated/);
    expect(run.stderr).not.toMatch(/CHANGELOG\.md does not explain/);
  });

  it('passes a breaking change released deliberately: baseline updated and CHANGELOG saying why, in the same change', () => {
    write('schema.graphql', removeEmail());
    write('contract/schema.released.graphql', removeEmail());
    write('CHANGELOG.md', explainRemoval(CHANGELOG));
    const run = check();
    expect(run.stdout).toMatch(/released deliberately/);
    expect(run.status).toBe(0);
  });

  it('warns about a dangerous change (an enum value added) and passes', () => {
    const document = visit(parse(SCHEMA), {
      EnumTypeDefinition(node: EnumTypeDefinitionNode) {
        if (node.name.value !== 'Role') return undefined;
        const auditor = (parse('enum E { AUDITOR }').definitions[0] as EnumTypeDefinitionNode).values![0];
        return { ...node, values: [...(node.values ?? []), auditor] };
      },
    });
    write('schema.graphql', print(document));
    const run = check();
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(
      /^warning: dangerous change to the GraphQL contract: AUDITOR was added to enum type Role\./m,
    );
  });
});

describe('reading CHANGELOG.md', () => {
  it('takes only the bullets under "### Breaking" of "## Unreleased"', () => {
    const changelog =
      '# Changelog\n\n## Unreleased\n### Added\n- X.y was removed. no\n### Breaking\n- A.b was removed. Because of reasons here.\n\n## 0.1.0\n### Breaking\n- C.d was removed. Long ago in a release.\n';
    expect(unreleasedBreakingEntries(changelog)).toEqual(['- A.b was removed. Because of reasons here.']);
  });

  it('wants a reason, not only the copied description', () => {
    const broken = removeEmail();
    const bare = CHANGELOG.replace('### Breaking\n- None.\n', '### Breaking\n- User.email was removed.\n');
    expect(
      checkCompatibility({ releasedAtBase: SCHEMA, released: broken, schema: broken, changelog: bare }).problems,
    ).toEqual([
      'CHANGELOG.md does not explain it under "## Unreleased" / "### Breaking": - User.email was removed. <why>',
    ]);
  });
});
