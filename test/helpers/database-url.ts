import type { Config } from '../../src/config';

export const TEST_DB_DEFAULTS: Config['db'] = {
  poolSize: 10,
  statementTimeoutMs: 10000,
  idleInTransactionTimeoutMs: 60000,
  connectTimeoutMs: 5000,
};

export function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}
