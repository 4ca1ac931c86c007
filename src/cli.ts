import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { loadConfig } from './config';
import { openDatabase } from './db/runtime';
import { DomainError } from './errors';
import { createLogger } from './logger';
import { createServices } from './services';

const USAGE = `Usage:
  npm run cli -- migrate
  npm run cli -- create-organization --name N --admin-email E --admin-name A [--admin-password P]`;

// Operator commands: results go to stdout as JSON, logs to stderr, so output can be piped.
async function run(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const config = loadConfig(process.env);
  const logger = createLogger({ level: process.env.LOG_LEVEL || 'warn', destination: process.stderr as never });

  if (command === 'migrate') {
    const database = await openDatabase({ config, logger, migrate: true });
    await database.close();
    process.stderr.write('migrations applied\n');
    return;
  }
  if (command === 'create-organization') {
    const { values } = parseArgs({
      args: rest,
      options: {
        name: { type: 'string' },
        'admin-email': { type: 'string' },
        'admin-name': { type: 'string' },
        'admin-password': { type: 'string' },
      },
      strict: true,
    });
    const { name, 'admin-email': adminEmail, 'admin-name': adminName, 'admin-password': adminPassword } = values;
    if (!name || !adminEmail || !adminName) throw new UsageError('--name, --admin-email and --admin-name are required.');
    const database = await openDatabase({ config, logger });
    try {
      const services = createServices({ ...database, logger, config });
      const created = await services.organizations.createWithAdmin({ name, adminEmail, adminName, adminPassword });
      process.stdout.write(JSON.stringify(created) + '\n');
    } finally {
      await database.close();
    }
    return;
  }
  throw new UsageError(command ? `Unknown command "${command}".` : 'No command given.');
}

class UsageError extends Error {}

run(process.argv.slice(2)).catch((error: unknown) => {
  const message = error instanceof UsageError ? `${error.message}\n${USAGE}` : error instanceof DomainError || error instanceof TypeError ? error.message : String((error as Error)?.stack ?? error);
  process.stderr.write(`${message}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
