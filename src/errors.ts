import { GraphQLError } from 'graphql';

export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'BAD_USER_INPUT'
  | 'CONFLICT'
  | 'RATE_LIMITED'
  | 'INTERNAL_SERVER_ERROR'
  | 'SERVICE_UNAVAILABLE'
  // Query limits (HTTP 400, before any resolver runs).
  | 'QUERY_TOO_LARGE'
  | 'QUERY_TOO_DEEP'
  | 'QUERY_TOO_COMPLEX'
  | 'TOO_MANY_ALIASES'
  | 'TOO_MANY_DIRECTIVES'
  // Query limits checked before validation (HTTP 400; see graphql/selection-limits.ts).
  | 'TOO_MANY_REPEATED_FIELDS'
  | 'TOO_MANY_FRAGMENT_SPREADS';

/** The few errors services throw; anything else is masked before it reaches a client. */
export class DomainError extends GraphQLError {
  constructor(
    message: string,
    readonly code: ErrorCode,
    extra: Record<string, unknown> = {},
  ) {
    super(message, { extensions: { code, ...extra } });
  }
}

export class UnauthenticatedError extends DomainError {
  constructor(message = 'Authentication required: send your access key in the X-Access-Key header.') {
    super(message, 'UNAUTHENTICATED');
  }
}

export class ForbiddenError extends DomainError {
  constructor(message = 'You do not have permission to do this.') {
    super(message, 'FORBIDDEN');
  }
}

export class NotFoundError extends DomainError {
  constructor(what = 'User') {
    super(`${what} not found.`, 'NOT_FOUND');
  }
}

export class BadInputError extends DomainError {
  constructor(message: string, field?: string) {
    super(message, 'BAD_USER_INPUT', field ? { field } : {});
  }
}

export class ConflictError extends DomainError {
  constructor(message: string) {
    super(message, 'CONFLICT');
  }
}

/** Codes graphql-js and Apollo attach to errors that are safe to show as they are. */
export const PUBLIC_FRAMEWORK_CODES: ReadonlySet<string> = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
]);

/**
 * Why PostgreSQL could not serve a statement just now, by SQLSTATE or driver code. Each is answered 503 with
 * Retry-After: a later try can succeed, and it is not the client's mistake.
 * - it cannot be reached or is restarting: socket errors, class 08 (connection), 57P01-57P03 (shutdown);
 * - it refuses more connections or resources: class 53 (53300 too many connections, 53400 configuration limit);
 * - a wait ran out: 57014 (statement_timeout, or cancelled), 55P03 (lock_timeout);
 * - it ended the session for idling in a transaction past DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: 25P03, which the
 *   statement sent next gets itself when the instance resumes from a pause of its event loop (a stopped process,
 *   a long synchronous stretch) and sends it before it reads the end of the session (else the statement is refused
 *   as "not queryable", below);
 * - a concurrent transaction won: 40P01 (deadlock detected), 40001 (serialization failure).
 */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
  '57014',
  '55P03',
  '25P03',
  '40P01',
  '40001',
]);
const UNAVAILABLE_CLASSES = ['08', '53'];

/** True when an error means PostgreSQL can't serve this right now (see UNAVAILABLE_CODES); looks through causes. */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (
    let current = error as { code?: unknown; driverError?: unknown; cause?: unknown; message?: unknown } | undefined,
      depth = 0;
    current && depth < 5;
    depth++
  ) {
    const code = typeof current.code === 'string' ? current.code : '';
    const message = typeof current.message === 'string' ? current.message : '';
    if (UNAVAILABLE_CODES.has(code) || (code.length === 5 && UNAVAILABLE_CLASSES.includes(code.slice(0, 2))))
      return true;
    if (
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
        message,
      )
    )
      return true;
    current = (current.driverError ?? current.cause) as typeof current;
  }
  return false;
}
