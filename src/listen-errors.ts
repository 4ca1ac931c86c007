import { ConfigError } from './config';

/** The settings that name an address the process listens on: the public one or the metrics one. */
export type ListenSettings = 'HOST and PORT' | 'METRICS_HOST and METRICS_PORT';

/**
 * A socket that could not listen (a port in use, a host that does not resolve or is not this machine's, a port
 * the process may not bind) as one line naming the settings to change, instead of Node's words alone (which
 * for a host that does not resolve read like a database outage). Any other error is returned as it is.
 */
export function listenFailure(
  error: unknown,
  where: { host: string; port: number; settings: ListenSettings },
): unknown {
  if (!(error instanceof Error) || error instanceof ConfigError) return error;
  const { code, syscall } = error as { code?: unknown; syscall?: unknown };
  if (typeof code !== 'string' || (syscall !== 'listen' && syscall !== 'getaddrinfo')) return error;
  const [hostSetting, portSetting] = where.settings.split(' and ');
  const why: Record<string, string> = {
    EADDRINUSE: `the address is already in use (another server runs there): stop it or set ${portSetting}`,
    EACCES: `permission denied: ports below 1024 need privileges, set ${portSetting} to 1024 or above`,
    EADDRNOTAVAIL: `${where.host} is not an address of this machine: set ${hostSetting} (127.0.0.1, 0.0.0.0 or ::)`,
    ENOTFOUND: `${where.host} does not resolve: set ${hostSetting} (127.0.0.1, 0.0.0.0 or ::)`,
    EAI_AGAIN: `${where.host} could not be resolved now: set ${hostSetting} to an address (127.0.0.1, 0.0.0.0 or ::)`,
  };
  return new ConfigError(
    `cannot listen on ${where.host}:${where.port}: ${why[code] ?? `${error.message}; check ${where.settings}`} (${code}).`,
  );
}
