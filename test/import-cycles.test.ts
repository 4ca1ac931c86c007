import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.join(__dirname, '..');

/** `npm run check:cycles` (the command .ci/run calls) in `cwd`: its exit status and what it printed. */
function checkCycles(cwd: string): { status: number | null; output: string } {
  const run = spawnSync('npm', ['run', '--silent', 'check:cycles'], { cwd, encoding: 'utf8' });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** A copy of what the check reads (sources, migrations, manifest, TypeScript settings) in a temporary folder. */
function copyOfTheSources(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-cycles-'));
  for (const entry of ['src', 'migrations'])
    fs.cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true });
  for (const file of ['package.json', 'tsconfig.json']) fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

describe('the import-cycle check (npm run check:cycles, run in CI)', () => {
  jest.setTimeout(120_000);

  it('finds no cycle in src/, type-only imports included', () => {
    const { status, output } = checkCycles(ROOT);
    expect(output).toMatch(/no circular dependency/);
    expect(status).toBe(0);
  });

  it('fails when a type-only import closes a cycle (the request layer reaching back up to the wiring)', () => {
    const dir = copyOfTheSources();
    try {
      const actor = path.join(dir, 'src', 'request', 'actor.ts');
      fs.writeFileSync(
        actor,
        `import type { Services } from '../server/services';\nexport type Planted = Services;\n${fs.readFileSync(actor, 'utf8')}`,
      );
      const { status, output } = checkCycles(dir);
      // A cycle through both files. dpdm names each from whichever of its files it reached first, which varies
      // from run to run (it reads files concurrently): services.ts -> ... -> actor.ts is such a cycle too.
      const cycles = output.split('\n').filter((line) => /^\s*\d+\)\s/.test(line));
      const planted = cycles.filter(
        (line) => line.includes('src/request/actor.ts') && line.includes('src/server/services.ts'),
      );
      expect(planted.length).toBeGreaterThan(0);
      expect(status).not.toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
