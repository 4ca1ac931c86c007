import type { EventEmitter } from 'node:events';
import { types } from 'node:util';

import type { Logger } from 'pino';

import type { Metrics } from './metrics';

/** A rejection's reason as logged: what it is, its message and stack, and none of its other fields. */
export interface LoggedRejection {
  /** The error's class (`Error`, `GraphQLError`), or `typeof` a reason that is not an error (`string`, `null`). */
  type: string;
  message: string;
  stack?: string;
}

/**
 * Keeps the server process alive through a promise rejection that no code handled: each one is logged once at
 * error level through `logger` (`err`: a LoggedRejection) and counted in `metrics`
 * (crm_access_unhandled_rejections_total). Returns the function that removes the listener again. Throws nothing.
 *
 * Why: Node's default (`--unhandled-rejections=throw`, since Node 15) turns such a rejection into an uncaught
 * exception and ends the process, and graphql-js 16 can leave one behind in rare schema shapes (completeListValue
 * dropping a list's pending items when another item fails at once; graphql/graphql-js pull request #3761). One bad request
 * would take down every client's connections. Nothing is half-done here: the request that orphaned the promise
 * has already been answered, so the bug is logged (error level: it is the server's), not fatal.
 *
 * Deliberately not `uncaughtException`: after a synchronous throw escaped every frame, the process' state is
 * unknown, and Node's default (print, exit 1, restarted by the orchestrator) stays. A `NODE_OPTIONS` with
 * `--unhandled-rejections=strict` ends the process before this listener is asked.
 *
 * Only the reason's type, message and stack are logged: its other fields may be the request's (a GraphQLError
 * carries the document and the client's aliases in its path), and a reason that is not an Error is not logged
 * at all, only its type. The logger still redacts credentials from the message and stack (src/logger.ts).
 */
export function handleUnhandledRejections(params: {
  logger: Logger;
  metrics: Pick<Metrics, 'countUnhandledRejection'>;
  /** Where 'unhandledRejection' is emitted: the process itself, except in a test. */
  process?: EventEmitter;
}): () => void {
  const { logger, metrics } = params;
  const emitter = params.process ?? process;
  const listener = (reason: unknown) => {
    metrics.countUnhandledRejection();
    logger.error(
      { err: loggedRejection(reason) },
      'a promise rejection that no code handled (a server bug); the process keeps serving',
    );
  };
  emitter.on('unhandledRejection', listener);
  return () => emitter.off('unhandledRejection', listener);
}

function loggedRejection(reason: unknown): LoggedRejection {
  if (reason instanceof Error || types.isNativeError(reason)) {
    const error = reason as Error;
    return { type: error.constructor?.name || error.name, message: error.message, stack: error.stack };
  }
  return {
    type: reason === null ? 'null' : typeof reason,
    message: 'the rejection reason is not an Error; its value is not logged (it may be request data)',
  };
}
