import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import fc from 'fast-check';

import { generateAccessKey, generateSessionToken, randomBase62 } from '../src/access-keys/key-format';

/**
 * The published detection rules for leaked credentials: the secretlint rule (checks the checksum) and the
 * gitleaks config (regular expressions only). Every key and token here is generated at run time; none is
 * committed, and the last test makes sure none is.
 */
const ROOT = path.join(__dirname, '..');
const SECRETLINT = path.join(ROOT, 'node_modules', '.bin', 'secretlint');
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS rule module, loaded as secretlint loads it
const rule = require('../tools/secretlint-rule-crm-access') as {
  findCredentials(
    text: string,
  ): Array<{ kind: 'ACCESS_KEY' | 'SESSION_TOKEN'; start: number; end: number; value: string }>;
};

interface Finding {
  messageId: string;
  message: string;
  ruleId: string;
  loc: { start: { line: number; column: number } };
}

/** Runs the secretlint CLI as CI does (the repository's .secretlintrc.json) on files under `cwd`. */
function secretlint(cwd: string, files: string[]): Array<Finding & { file: string }> {
  // A report file, not stdout: secretlint exits before a pipe has taken more than 64 KiB of it (and then
  // exits 0 whatever it found, so the findings are what counts).
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-secretlint-')), 'report.json');
  const run = spawnSync(
    SECRETLINT,
    [
      '--secretlintrc',
      path.join(ROOT, '.secretlintrc.json'),
      '--format',
      'json',
      '--output',
      report,
      '--no-glob',
      ...files,
    ],
    { cwd, encoding: 'utf8' },
  );
  if (run.status !== 0) throw new Error(`secretlint failed (${run.status}): ${run.stderr}`);
  const results = JSON.parse(fs.readFileSync(report, 'utf8') || '[]') as Array<{
    filePath: string;
    messages: Finding[];
  }>;
  fs.rmSync(path.dirname(report), { recursive: true, force: true });
  return results.flatMap((result) =>
    result.messages.map((message) => ({ ...message, file: path.relative(cwd, result.filePath) })),
  );
}

/** The same characters, the last one changed: the shape of a key, a checksum that does not match. */
function breakChecksum(credential: string): string {
  const last = credential.at(-1)!;
  return credential.slice(0, -1) + (last === 'a' ? 'b' : 'a');
}

describe('the secretlint rule (tools/secretlint-rule-crm-access)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-scan-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds real keys and tokens wherever they were pasted, and skips every lookalike', () => {
    const key = generateAccessKey();
    const otherKey = generateAccessKey();
    const token = generateSessionToken();
    fs.writeFileSync(
      path.join(dir, 'leaks.env'),
      [
        `CRM_ACCESS_KEY=${key}`, // line 1: found
        `curl -H 'Authorization: Bearer ${token}' https://crm.example/graphql`, // line 2: found
        `{"adminAccessKey":"${otherKey}"}`, // line 3: found
        `https://crm.example/graphql?key=${key}&x=1`, // line 4: found
      ].join('\n'),
    );
    fs.writeFileSync(
      path.join(dir, 'lookalikes.md'),
      [
        `checksum off by one character: ${breakChecksum(key)} ${breakChecksum(token)}`,
        `a placeholder: cak_${'A'.repeat(38)} or cak_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`,
        `one character short or long: ${key.slice(0, -1)} ${key}Z`,
        `inside a longer identifier: my${key} ${key}_old`,
        `another prefix: cax_${key.slice(4)} cak-${key.slice(4)}`,
        `the random part alone: ${key.slice(4, 36)}`,
      ].join('\n'),
    );

    const findings = secretlint(dir, ['leaks.env', 'lookalikes.md']);
    expect(
      findings.map(({ file, messageId, ruleId, loc }) => ({ file, messageId, ruleId, line: loc.start.line })),
    ).toEqual([
      { file: 'leaks.env', messageId: 'ACCESS_KEY', ruleId: 'secretlint-rule-crm-access', line: 1 },
      { file: 'leaks.env', messageId: 'SESSION_TOKEN', ruleId: 'secretlint-rule-crm-access', line: 2 },
      { file: 'leaks.env', messageId: 'ACCESS_KEY', ruleId: 'secretlint-rule-crm-access', line: 3 },
      { file: 'leaks.env', messageId: 'ACCESS_KEY', ruleId: 'secretlint-rule-crm-access', line: 4 },
    ]);
    // The report names the finding without repeating the secret.
    for (const finding of findings)
      for (const secret of [key, otherKey, token]) expect(finding.message).not.toContain(secret);
  });

  it('agrees with the service on every generated credential and on random lookalikes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(generateAccessKey, generateSessionToken),
        fc.string({ maxLength: 20 }),
        (generate, context) => {
          const credential = generate();
          const text = `${context} ${credential} ${context}`;
          expect(rule.findCredentials(text).map((found) => found.value)).toEqual([credential]);
          expect(rule.findCredentials(`${context} ${breakChecksum(credential)} ${context}`)).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
    // 38 random base62 characters after the prefix almost never carry a valid checksum (1 in 62^6).
    const lookalikes = Array.from({ length: 2000 }, () => `cak_${randomBase62(38)}`).join('\n');
    expect(rule.findCredentials(lookalikes)).toEqual([]);
  });
});

describe('the gitleaks config (.gitleaks.toml)', () => {
  const toml = fs.readFileSync(path.join(ROOT, '.gitleaks.toml'), 'utf8');
  const regexes = [...toml.matchAll(/^regex = '''(.*)'''$/gm)].map((match) => new RegExp(match[1], 'g'));

  it('has one rule per prefix whose pattern (RE2 and JavaScript read it alike) finds generated credentials', () => {
    expect(regexes).toHaveLength(2);
    const key = generateAccessKey();
    const token = generateSessionToken();
    const text = `KEY=${key}\nAuthorization: Bearer ${token}\nnot this: my${key}`;
    const found = regexes.flatMap((regex) => [...text.matchAll(regex)].map((match) => match[1]));
    expect(found).toEqual([key, token]);
    expect(toml).toMatch(/cannot check the 6-character CRC32 checksum/);
  });
});

describe("the repository's own files", () => {
  it('contain no checksum-valid key or token (every file git tracks, and new ones not yet added)', () => {
    const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
      cwd: ROOT,
      encoding: 'utf8',
    })
      .split('\0')
      .filter((file) => file && fs.existsSync(path.join(ROOT, file)));
    expect(files.length).toBeGreaterThan(100);
    const findings = secretlint(ROOT, files);
    expect(findings.map((finding) => `${finding.file}:${finding.loc.start.line}`)).toEqual([]);
  });
});
