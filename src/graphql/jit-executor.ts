import type { GatewayExecutor, GatewayGraphQLRequestContext, GatewayInterface } from '@apollo/server-gateway-interface';
import {
  type DocumentNode,
  execute,
  type ExecutionResult,
  GraphQLError,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';

/** What is known of one operation of a cached document: seen once, compiled, or not compilable. */
type Compilation = 'seen-once' | CompiledQuery | 'not-compilable';

/**
 * Executes the operations Apollo has parsed, validated and resolved (requestPipeline, our plugin hooks
 * included) with graphql-jit from a document's second use, with graphql-js before that and for what
 * graphql-jit does not compile. The compiled queries hang on Apollo's cached DocumentNode (a WeakMap): they
 * live as long as Apollo's document store keeps the document, so their number is bounded by it, and a
 * document sent once (as an attacker sending endless distinct documents would) is never compiled.
 * Mutations and introspection always run in graphql-js.
 * The answer is graphql-js's, byte for byte (see toGraphqlJsError and the variables fallback).
 */
export function jitGateway(schema: GraphQLSchema): GatewayInterface {
  const compilations = new WeakMap<DocumentNode, Map<string, Compilation>>();

  const compiledFor = (
    document: DocumentNode,
    operation: OperationDefinitionNode,
    name: string,
  ): CompiledQuery | null => {
    let byName = compilations.get(document);
    if (!byName) {
      byName = new Map();
      compilations.set(document, byName);
    }
    const known = byName.get(name);
    if (known === undefined) {
      byName.set(name, 'seen-once');
      return null;
    }
    if (known === 'not-compilable') return null;
    if (known !== 'seen-once') return known;
    const compiled = compilable(operation) ? compileQuery(schema, document, name || undefined) : null;
    if (compiled && isCompiledQuery(compiled)) {
      byName.set(name, compiled);
      return compiled;
    }
    byName.set(name, 'not-compilable');
    return null;
  };

  const runGraphqlJs = (requestContext: GatewayGraphQLRequestContext): Promise<ExecutionResult> =>
    Promise.resolve(
      execute({
        schema,
        document: requestContext.document,
        contextValue: requestContext.context,
        variableValues: requestContext.request.variables,
        operationName: requestContext.operationName ?? undefined,
      }),
    );
  const finish = (
    result: ExecutionResult,
    requestContext: GatewayGraphQLRequestContext,
  ): ExecutionResult | Promise<ExecutionResult> => {
    // Variables that do not coerce: nothing ran, and graphql-js words the errors (with their nodes, which
    // Apollo reads to answer 400 BAD_USER_INPUT).
    if (!('data' in result)) return runGraphqlJs(requestContext);
    return result.errors ? { data: result.data, errors: result.errors.map(toGraphqlJsError) } : result;
  };

  // Not an async function, and no closure per request: Apollo awaits the answer anyway, and a compiled query
  // often answers synchronously.
  const executor: GatewayExecutor = (requestContext) => {
    const { document, operation } = requestContext;
    const compiled = operation ? compiledFor(document, operation, requestContext.operationName ?? '') : null;
    if (!compiled) return runGraphqlJs(requestContext);
    const answer = compiled.query(undefined, requestContext.context, requestContext.request.variables);
    return answer instanceof Promise
      ? answer.then((result) => finish(result, requestContext))
      : Promise.resolve(finish(answer, requestContext));
  };

  return {
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: '' });
      return () => {};
    },
    async load() {
      return { executor };
    },
    async stop() {},
  };
}

/** Queries only, and none that asks for __schema or __type at its top. */
function compilable(operation: OperationDefinitionNode): boolean {
  if (operation.operation !== 'query') return false;
  return !operation.selectionSet.selections.some(
    (selection) =>
      selection.kind === 'Field' && (selection.name.value === '__schema' || selection.name.value === '__type'),
  );
}

/**
 * graphql-jit's errors carry `locations`, `path` and `originalError` but are not graphql-js's GraphQLError
 * (no `extensions` object when the original has none, which Apollo reads): made into one, as graphql-js's
 * locatedError would have. A null in a non-null field has no original in graphql-jit; graphql-js throws an
 * Error with the same message there, which our error listener logs: one like it.
 */
function toGraphqlJsError(error: GraphQLError): GraphQLError {
  const originalError = error.originalError ?? new Error(error.message);
  const made = new GraphQLError(error.message, { path: error.path, originalError });
  (made as { locations: GraphQLError['locations'] }).locations = error.locations;
  return made;
}
