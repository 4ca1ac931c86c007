import 'reflect-metadata';

import { parseArgs } from 'node:util';

import { DEFAULT_ROTATION_BATCH_SIZE, rotateSecret } from './access-keys/secret-rotation';
import { MAX_NORMALIZED_INPUT } from './authentication/password';
import { loadConfig, wholeNumber } from './config';
import { type Database, MigrationsPendingError, openDatabase } from './db/runtime';
import { createLogger } from './logger';
import { operatorMessage } from './operator-errors';
import { createServices } from './server/services';

const PASSWORD_ENV = 'CRM_ADMIN_PASSWORD';

const USAGE = `Usage:
  npm run cli -- migrate
      Applies pending database migrations (to DATABASE_URL, or to the embedded database).
  npm run cli -- create-organization --name N --admin-email E --admin-name A [password option]
      Creates an organization and its first admin, and prints one JSON object:
      {"organizationId", "adminUserId", "adminEmail", "adminAccessKey"}.
      The admin's password is optional (without one the admin uses the access key only); give it with one of:
        --admin-password-stdin   read it from the first line of standard input
                                 (printf '%s\\n' "$PASSWORD" | npm run cli -- create-organization ... --admin-password-stdin)
        ${PASSWORD_ENV}=P     read it from this environment variable
        --admin-password P       on the command line: other users of the machine can read it in the process list
  npm run cli -- rotate-secret [--batch-size N]
      Re-encrypts and re-digests every access key under the current master secret, the first of
      ACCESS_KEY_SECRET="<new>,<old>" (comma- or newline-separated, current first), N keys per transaction
      (default ${DEFAULT_ROTATION_BATCH_SIZE}, at most 10000). Online: keys keep working on every instance meanwhile.
      Safe to kill and run again: it continues with the keys not yet under the current secret. At the end
      the database records the current secret, so the old one may leave ACCESS_KEY_SECRET. Prints one JSON
      object: {"rotated", "batches", "fingerprintMoved", "olderSecretsUsedUntil"} (the latest end of a grace
      period or session still under an older secret: keep it in the list until then). See README.md.
  npm run cli -- --help
      Shows this text.
Each option is given once: one given twice (--name X --name Y) is refused, not read as the last.
Configuration (DATABASE_URL, ACCESS_KEY_SECRET, DATA_DIR, ...) comes from the environment: see README.md.`;

class UsageError extends Error {}

/**
 * The most bytes of a first line read from standard input: a longer one cannot be a password (newPasswordProblem
 * refuses more than MAX_NORMALIZED_INPUT UTF-16 units, and a unit is at most 3 bytes of UTF-8), with room for a
 * byte order mark and a line break.
 */
const MAX_STDIN_LINE_BYTES = 3 * MAX_NORMALIZED_INPUT + 8;

/**
 * The first line of standard input, without its line break (LF, CR LF, or a CR ending it), decoded as UTF-8
 * strictly: bytes that are not UTF-8 (text typed in a Latin-1 terminal) are a UsageError, not U+FFFD in a
 * password nobody could type again, and a byte order mark at the start (what Windows tools write) is no part of
 * the line. Reading stops at the first line break: a password typed at a terminal needs Enter, not Ctrl-D, a
 * stream that never ends (`yes "$P" | ...`) is not read to its end, and what follows the line is not looked at.
 * @throws UsageError when the line is not UTF-8, or longer than any password (MAX_STDIN_LINE_BYTES).
 */
async function firstLineOfStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of process.stdin) {
    const bytes = chunk as Buffer;
    const newline = bytes.indexOf(0x0a);
    const line = newline >= 0 ? bytes.subarray(0, newline) : bytes;
    chunks.push(line);
    length += line.length;
    // Leaving the loop destroys the stream: nothing more is read.
    if (newline >= 0 || length > MAX_STDIN_LINE_BYTES) break;
  }
  if (length > MAX_STDIN_LINE_BYTES) {
    throw new UsageError('--admin-password-stdin: the first line of standard input is longer than any password.');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new UsageError('--admin-password-stdin: standard input is not UTF-8 text (set the terminal to UTF-8).');
  }
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}

/**
 * The admin's password from at most one of its three sources. The flag is the least private (the process
 * list shows it), so stdin and the environment variable exist; two sources at once are refused as ambiguous.
 * @throws UsageError (exit 2): several sources, an empty one, or standard input that is not UTF-8.
 */
async function adminPassword(params: {
  flag: string | undefined;
  fromStdin: boolean;
  env: NodeJS.ProcessEnv;
}): Promise<string | undefined> {
  const fromEnv = params.env[PASSWORD_ENV];
  // Set but empty is a mistake (`CRM_ADMIN_PASSWORD="$ADMIN_PASSWORD"` after a `read` that got nothing), not a
  // wish for no password, as `--admin-password ''` is refused: leaving the variable unset is how to ask for none.
  if (fromEnv === '')
    throw new UsageError(`${PASSWORD_ENV} is set but empty: give a password, or unset it for an admin without one.`);
  const given = [params.flag !== undefined, params.fromStdin, fromEnv !== undefined].filter(Boolean).length;
  if (given > 1)
    throw new UsageError(
      `Give the admin password with one of --admin-password, --admin-password-stdin or ${PASSWORD_ENV}, not several.`,
    );
  if (!params.fromStdin) return params.flag ?? fromEnv;
  const password = await firstLineOfStdin();
  if (!password)
    throw new UsageError('--admin-password-stdin: no password on standard input (its first line is empty).');
  return password;
}

/**
 * Test-only: with CRM_TEST_ROTATE_PAUSE_AFTER_BATCHES=N (and NODE_ENV=test), rotate-secret stops after its
 * Nth committed batch, says so on stderr and waits to be killed, so a test can make requests mid-rotation and
 * kill the process at a known point (test/access-keys/secret-rotation.test.ts). Ignored outside tests.
 */
async function testOnlyPause(batches: number): Promise<void> {
  if (process.env.NODE_ENV !== 'test' || Number(process.env.CRM_TEST_ROTATE_PAUSE_AFTER_BATCHES) !== batches) return;
  process.stderr.write(`rotate-secret paused after ${batches} batches\n`);
  await new Promise(() => setInterval(() => undefined, 60_000));
}

/**
 * openDatabase for a command that reads or writes keys. Throws MigrationsPendingError (after closing it) while a
 * migration is pending: the secret is then not checked against the database (SecretCheck), and a key issued or a
 * fingerprint recorded under a wrong one would have every instance refused at start.
 */
async function openCheckedDatabase(params: Parameters<typeof openDatabase>[0]): Promise<Database> {
  const database = await openDatabase({ ...params, warnPending: false });
  if (database.secretCheck.checked) return database;
  await database.close();
  throw new MigrationsPendingError(
    'database migrations are pending: run `npm run migrate` first (ACCESS_KEY_SECRET is checked against the ' +
      'database once they are applied).',
  );
}

type OptionsConfig = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/**
 * A command's options as parseArgs reads them (strict: an unknown option or a stray argument is refused), with
 * every option given at most once. parseArgs lets the last of a repeated option win without a word
 * (`--name X --name Y` is "Y"), so a script that appends an option it already has runs with whichever came last:
 * a repeat is a UsageError naming the option, never its values (either may be a password).
 * @throws UsageError when an option is given twice; parseArgs' own errors (ERR_PARSE_ARGS_*) as they are.
 */
function parseOptions<T extends OptionsConfig>(args: string[], options: T) {
  const parsed = parseArgs({ args, options, strict: true, allowPositionals: false, tokens: true });
  const seen = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option') continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} was given twice: give each option once.`);
    seen.add(token.name);
  }
  return parsed.values;
}

const wantsHelp = (argv: string[]): boolean =>
  argv.some((arg) => arg === '--help' || arg === '-h') || argv[0] === 'help';

// Operator commands: results go to stdout as JSON, logs to stderr, so output can be piped.
async function run(argv: string[]): Promise<void> {
  if (wantsHelp(argv)) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const [command, ...rest] = argv;
  const config = loadConfig(process.env);
  // Warnings only unless LOG_LEVEL says otherwise, read as the server reads it (checked, any letter case).
  const level = process.env.LOG_LEVEL?.trim() ? config.logLevel : 'warn';
  const logger = createLogger({ level, destination: process.stderr as never });

  if (command === 'migrate') {
    // It takes nothing: an option or argument it was given (a hoped-for --dry-run) is a usage error, not ignored.
    parseOptions(rest, {});
    const database = await openDatabase({
      config,
      logger,
      migrate: true,
      // Waits, however long (an operator's command), but not silently: LOG_LEVEL is warn here.
      onLockWait: (holder) =>
        process.stderr.write(
          `waiting for the migrations lock: another session is applying migrations (${
            holder ? `pid ${holder.pid}, application_name "${holder.applicationName ?? '?'}"` : 'holder not visible'
          }); see README "Upgrading a large database"\n`,
        ),
    });
    await database.close();
    const applied = database.appliedMigrations ?? [];
    process.stderr.write(
      applied.length === 0 ? 'no migrations pending\n' : `migrations applied: ${applied.join(', ')}\n`,
    );
    return;
  }
  if (command === 'create-organization') {
    const values = parseOptions(rest, {
      name: { type: 'string' },
      'admin-email': { type: 'string' },
      'admin-name': { type: 'string' },
      'admin-password': { type: 'string' },
      'admin-password-stdin': { type: 'boolean' },
    });
    const { name, 'admin-email': adminEmail, 'admin-name': adminName } = values;
    if (!name || !adminEmail || !adminName)
      throw new UsageError('--name, --admin-email and --admin-name are required.');
    const password = await adminPassword({
      flag: values['admin-password'],
      fromStdin: values['admin-password-stdin'] ?? false,
      env: process.env,
    });
    const database = await openCheckedDatabase({ config, logger });
    try {
      const services = createServices({ ...database, logger, config });
      const created = await services.organizations.createWithAdmin({
        name,
        adminEmail,
        adminName,
        adminPassword: password,
      });
      process.stdout.write(JSON.stringify(created) + '\n');
    } finally {
      await database.close();
    }
    return;
  }
  if (command === 'rotate-secret') {
    const values = parseOptions(rest, { 'batch-size': { type: 'string' } });
    const rawBatchSize = values['batch-size'];
    const batchSize = rawBatchSize === undefined ? DEFAULT_ROTATION_BATCH_SIZE : wholeNumber(rawBatchSize);
    if (!(batchSize >= 1 && batchSize <= 10_000)) {
      throw new UsageError(`--batch-size must be a whole number from 1 to 10000, got "${rawBatchSize}".`);
    }
    const database = await openCheckedDatabase({ config, logger });
    try {
      const result = await rotateSecret({
        dataSource: database.dataSource,
        keyCrypto: database.keyCrypto,
        batchSize,
        afterBatch: async (progress) => {
          logger.info(progress, 'access keys moved to the current secret');
          await testOnlyPause(progress.batches);
        },
      });
      process.stdout.write(JSON.stringify(result) + '\n');
    } finally {
      await database.close();
    }
    return;
  }
  throw new UsageError(command ? `Unknown command "${command}".` : 'No command given.');
}

/**
 * A usage error in words. parseArgs' refusal of a stray argument quotes it ("Unexpected argument 'X'"), and a
 * stray argument is as often as not a password or key typed after a flag that takes none
 * (`--admin-password-stdin hunter2...`): that one is said without repeating it, as stderr may end up in a job's
 * log. parseArgs' other messages name options only.
 */
function usageMessage(error: Error & { code?: unknown }): string {
  if (error.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    return (
      'Unexpected argument: this command takes values only after their options (--name N, not N alone). ' +
      'It is not repeated here, as it may be a password or key.'
    );
  }
  return error.message;
}

run(process.argv.slice(2)).catch((error: unknown) => {
  const usage =
    error instanceof UsageError || (error as { code?: unknown })?.code?.toString().startsWith('ERR_PARSE_ARGS');
  process.stderr.write(usage ? `${usageMessage(error as Error)}\n${USAGE}\n` : `${operatorMessage(error)}\n`);
  process.exit(usage ? 2 : 1);
});
