import 'reflect-metadata';

import { AuditRetention, DEFAULT_AUDIT_RETENTION } from './audit/audit-retention';
import { loadConfig, nodeEnvWarning } from './config';
import { openDatabase } from './db/runtime';
import { ensureDemoOrganization } from './dev/demo';
import { listenFailure } from './listen-errors';
import { createLogger } from './logger';
import { Metrics } from './metrics';
import { operatorMessage } from './operator-errors';
import { buildApp } from './server/app';
import { createServices } from './server/services';
import { handleUnhandledRejections } from './unhandled-rejections';

const SHUTDOWN_TIMEOUT_MS = 15_000;

/**
 * The listening address as a browser can open it: a wildcard host (HOST=:: or 0.0.0.0, every address) is not
 * an address browsers connect to, so it becomes localhost. `address` is the one Fastify's listen resolves to,
 * "http://host:port": "http://[::]:4000" for HOST=::, a loopback address for 0.0.0.0.
 */
function browsable(address: string): string {
  return address.replace(/^http:\/\/(0\.0\.0\.0|\[::\]):/, 'http://localhost:');
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel });
  // As soon as there is a logger: a rejection no code handled is logged and counted, not the end of the process
  // (graphql-js 16 can orphan one; src/unhandled-rejections.ts). Uncaught exceptions keep Node's default: exit.
  const metrics = new Metrics();
  handleUnhandledRejections({ logger, metrics });
  const nodeEnvNotice = nodeEnvWarning(process.env);
  if (nodeEnvNotice) logger.warn(nodeEnvNotice);
  // A start that finds another instance migrating listens at once and serves 503 until they are applied.
  const database = await openDatabase({ config, logger, waitForLock: false });
  // A start that fails from here on (a port in use, say) closes what it opened before it exits, newest first:
  // the embedded PostgreSQL would otherwise outlive the process until the next start found it.
  const opened: Array<() => Promise<void>> = [() => database.close()];
  const failed = async (error: unknown): Promise<never> => {
    for (const close of opened.reverse()) await close().catch(() => undefined);
    throw error;
  };
  const services = createServices({ ...database, logger, config, metrics });
  opened.push(() => services.stop());
  await services.start().catch(failed);
  const app = await buildApp({ config, services, logger, secretCheck: database.secretCheck }).catch(failed);
  opened.push(() => app.close());
  // Every instance runs it; an advisory lock lets one delete at a time (src/audit/audit-retention.ts).
  const retention = new AuditRetention({
    dataSource: database.dataSource,
    logger,
    settings: { ...DEFAULT_AUDIT_RETENTION, days: config.auditRetentionDays },
  });
  retention.start();
  opened.push(() => retention.stop());

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    const timer = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    try {
      await app.close();
      await retention.stop();
      await services.stop();
      await database.close();
      logger.info('stopped');
    } catch (error) {
      logger.error({ err: error }, 'error while shutting down');
      process.exitCode = 1;
    }
  };
  // A secret refused once the migrations were applied (the database was set up under another one) stops the
  // process as a refusal at start does: exit status 1, the reason in SecretCheck's one error line.
  // Like the signals' shutdown, it ends once everything is closed (or after SHUTDOWN_TIMEOUT_MS).
  void database.secretCheck.refused.then(() => {
    process.exitCode = 1;
    return shutdown('ACCESS_KEY_SECRET refused');
  });
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  const address = await app
    .listen({ host: config.host, port: config.port })
    .catch((error: unknown) =>
      failed(listenFailure(error, { host: config.host, port: config.port, settings: 'HOST and PORT' })),
    );
  const graphqlUrl = `${browsable(address)}/graphql`;
  logger.info({ url: graphqlUrl }, 'crm-access is listening');
  if (app.metricsUrl) logger.info({ url: app.metricsUrl }, 'Prometheus metrics are served');
  if (database.embedded) {
    const demo = await ensureDemoOrganization(services).catch(failed);
    // The embedded default is a developer's own machine: printing the demo credentials is the point.
    process.stdout.write(
      [
        '',
        `crm-access is running with an embedded PostgreSQL (data in ${config.dataDir})`,
        `  PostgreSQL data:  ${database.embedded.clusterDir}`,
        `  GraphQL:          ${graphqlUrl}  (open it in a browser for the explorer)`,
        `  Admin console:    ${graphqlUrl.replace(/\/graphql$/, '/admin')}`,
        `  Admin email:      ${demo.email}`,
        ...(demo.password ? [`  Admin password:   ${demo.password}  (shown once)`] : []),
        `  Admin access key: ${demo.accessKey ?? '(none)'}`,
        `  Try: curl -s ${graphqlUrl} -H 'content-type: application/json' -H 'X-Access-Key: ${demo.accessKey ?? ''}' \\`,
        `         -d '{"query":"{ me { email role } }"}'`,
        '',
      ].join('\n') + '\n',
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`crm-access could not start: ${operatorMessage(error)}\n`);
  process.exit(1);
});
