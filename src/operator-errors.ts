import { ConfigError } from './config';
import { MigrationsPendingError, SecretMismatchError } from './db/runtime';
import { EmbeddedPostgresError } from './dev/embedded-postgres';
import { DomainError } from './errors';

/** Errors that are an operator's to fix, whose message says how: printed alone. */
function isExplained(error: Error): boolean {
  return (
    error instanceof ConfigError ||
    error instanceof SecretMismatchError ||
    error instanceof MigrationsPendingError ||
    error instanceof EmbeddedPostgresError ||
    error instanceof DomainError
  );
}

/** A system or PostgreSQL error code (ECONNREFUSED, ENOTFOUND, 28P01, 3D000, EADDRINUSE...), if the error has one. */
function codeOf(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET']);

/**
 * What an operator reads when the server or the CLI cannot do its work: one line, no stack trace, for a bad
 * setting, a wrong ACCESS_KEY_SECRET, input the service refuses, a database it cannot reach or log in to, or one
 * that ended the connection under the command (the embedded PostgreSQL's own errors keep the lines of its log
 * they quote).
 * Only an error nobody anticipated (a bug) keeps its stack, since then the stack is what to report.
 */
export function operatorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (isExplained(error)) return error.message;
  const code = codeOf(error);
  if (code && (CONNECTION_CODES.has(code) || /^(08|28|3D)/.test(code))) {
    return `could not connect to PostgreSQL: ${error.message} (${code}). Check DATABASE_URL and that the server is running.`;
  }
  // PostgreSQL's operator-intervention class ended the session under the command: a fast or crash shutdown, a
  // restart, pg_terminate_backend, its database dropped, an idle-session timeout (57P01, 57P02, 57P04, 57P05).
  if (code && /^57P0[1245]$/.test(code)) return lostConnection(`${error.message} (${code})`);
  if (code) return `${error.message} (${code})`;
  if (/timeout exceeded when trying to connect|terminated due to connection timeout/i.test(error.message)) {
    return `could not connect to PostgreSQL: ${error.message}`;
  }
  // pg's words for a connection PostgreSQL ended under the command (a restart, pg_terminate_backend): during a
  // statement, or between two (then the next one is refused as "not queryable").
  if (/Connection terminated|Client has encountered a connection error/i.test(error.message)) {
    return lostConnection(error.message);
  }
  return String(error.stack ?? error.message);
}

function lostConnection(what: string): string {
  return `lost the connection to PostgreSQL: ${what}. Check that the server is running, then run the command again.`;
}
