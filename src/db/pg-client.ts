import type { EventEmitter } from 'node:events';

import { Client, type ClientConfig } from 'pg';

/** Called with a connection's error that no other listener of the client took. */
export type UnheardError = (error: Error) => void;

/**
 * pg's Client, listening for 'error' from its creation to its end. pg emits 'error' when a connection fails
 * while no query runs on it: PostgreSQL stopping or restarting ends every session with 57P01 ("terminating
 * connection due to administrator command"), pg_terminate_backend one. An 'error' nobody listens for is thrown
 * and ends the process. pg-pool listens only while a client is idle in the pool, and removes its listener on
 * checkout; TypeORM puts its own on a client it checks out, but a moment later (after a promise settles), and
 * code that checks a client out by hand (audit retention) has none between its statements. So every client the
 * service makes is one of these: the error still marks the client unusable (pg refuses its next query, the pool
 * discards it on release), whoever uses it next gets an error to handle, and the process lives.
 *
 * `unheard` is told of the first error no other listener took: one on a checked-out connection between statements.
 * `ended`, when given, is told of every FATAL error PostgreSQL sends before it ends the session, whoever gets it:
 * the 'error' event when no statement runs, or the statement sent just then (a process that resumes from a pause
 * sends its next statement before it reads what arrived meanwhile, and pg gives that statement the error).
 */
export function listeningClientClass(
  unheard: UnheardError = () => undefined,
  ended?: (error: Error) => void,
): typeof Client {
  return class ListeningClient extends Client {
    constructor(config?: string | ClientConfig) {
      super(config);
      if (ended) {
        // pg's protocol connection, made by Client's constructor; each ErrorResponse is an 'errorMessage' there.
        (this as unknown as { connection: EventEmitter }).connection.on(
          'errorMessage',
          (error: Error & { severity?: unknown }) => {
            if (error.severity === 'FATAL') ended(error);
          },
        );
      }
      // A lost connection emits twice (PostgreSQL's error, then the socket's end): it is told once.
      let told = false;
      this.on('error', (error: Error) => {
        if (told || this.listenerCount('error') > 1) return;
        told = true;
        unheard(error);
      });
    }
  };
}

/** A new ListeningClient (see listeningClientClass): the way this service opens a connection of its own. */
export function createClient(config: ClientConfig, unheard?: UnheardError): Client {
  const ListeningClient = listeningClientClass(unheard);
  return new ListeningClient(config);
}
