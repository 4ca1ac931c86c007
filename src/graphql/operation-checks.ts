import type {
  ApolloServerPlugin,
  GraphQLRequestContextDidResolveOperation,
  GraphQLRequestListener,
} from '@apollo/server';

/** What a check sees of a request once Apollo has parsed, validated and picked (or failed to pick) its operation. */
export type OperationCheckContext = Pick<
  GraphQLRequestContextDidResolveOperation<object>,
  'document' | 'operation' | 'request'
>;

/** A check of an operation before it runs: returns when it may run, throws the client's error when not. */
export type OperationCheck = (context: OperationCheckContext) => void;

/**
 * Everything that refuses an operation before it runs, in one Apollo plugin (one concern): `checks` run in
 * order after parsing and validation, and the first to throw answers the request (each throws its own 4xx
 * error); no resolver, and no database work, runs for a refused operation. The checks read only the document
 * (cached per query text, see each) and the variables.
 *
 * One listener serves every request: no objects or closures are made per request.
 */
export function operationChecksPlugin(checks: readonly OperationCheck[]): ApolloServerPlugin {
  const listener: GraphQLRequestListener<object> = {
    async didResolveOperation(context) {
      for (const check of checks) check(context);
    },
  };
  return { requestDidStart: async () => listener };
}
