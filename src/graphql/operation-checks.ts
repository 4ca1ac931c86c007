import type { GraphQLRequestContextDidResolveOperation } from '@apollo/server';

import type { SyncableRequestListener } from '../server/request-listeners';

/** What a check sees of a request once Apollo has parsed, validated and picked (or failed to pick) its operation. */
export type OperationCheckContext = Pick<
  GraphQLRequestContextDidResolveOperation<object>,
  'document' | 'operation' | 'request' | 'schema'
>;

/** A check of an operation before it runs: returns when it may run, throws the client's error when not. */
export type OperationCheck = (context: OperationCheckContext) => void;

/**
 * Everything that refuses an operation before it runs, as one Apollo request listener (one concern): `checks` run in
 * order after parsing and validation, and the first to throw answers the request (each throws its own 4xx
 * error); no resolver, and no database work, runs for a refused operation. The checks read only the document
 * (cached per query text, see each), the variables and the schema.
 *
 * The listener serves every request (see requestListenersPlugin): nothing is made per request, and its hook
 * returns at once (no promise; a refusal is thrown).
 */
export function operationChecksListener(checks: readonly OperationCheck[]): SyncableRequestListener<object> {
  return {
    didResolveOperation(context) {
      for (const check of checks) check(context);
    },
  };
}
