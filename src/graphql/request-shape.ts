import type { GraphQLResponse } from '@apollo/server';
import {
  type ASTNode,
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  GraphQLError,
  isNonNullType,
  Kind,
  TypeInfo,
  type ValidationContext,
  visit,
  visitWithTypeInfo,
} from 'graphql';

import { DomainError } from '../errors';
import type { OperationCheckContext } from './operation-checks';

/**
 * The schema has no Subscription type, and graphql-js 16 does not refuse a subscription at validation (17
 * does, with KnownOperationTypesRule): without this it reached execution and failed there as an internal
 * error. Refused as a validation error (400), so it also holds for GET, before Apollo's GET-only-queries check.
 */
export function NoSubscriptionsRule(context: ValidationContext): ASTVisitor {
  return {
    OperationDefinition(node) {
      if (node.operation === 'subscription' && !context.getSchema().getSubscriptionType()) {
        context.reportError(
          new GraphQLError(
            'This API has no subscriptions: send queries and mutations (poll a query to watch for changes).',
            {
              nodes: node,
            },
          ),
        );
      }
    },
  };
}

function operationCount(document: DocumentNode): number {
  return document.definitions.filter((definition) => definition.kind === Kind.OPERATION_DEFINITION).length;
}

/** Why graphql-js could not pick an operation, in words that say what to send instead. */
function unresolvedOperationMessage(document: DocumentNode, operationName: string | null | undefined): string {
  if (operationName !== undefined && operationName !== null) {
    const names = document.definitions.flatMap((definition) =>
      definition.kind === Kind.OPERATION_DEFINITION && definition.name ? [`"${definition.name.value}"`] : [],
    );
    const known = names.length
      ? `: the document names ${names.join(', ')}`
      : ': the operations in the document have no names';
    return `Unknown operation named "${operationName}"${known}.`;
  }
  return `The document has ${operationCount(document)} operations: send "operationName" to pick the one to run.`;
}

const PERSISTED_QUERIES_OFF =
  'Automatic persisted queries are not supported by this API: send the full query text in "query", ' +
  'without a persistedQuery extension.';

/**
 * Request shapes that are a client's mistake, answered as such before anything runs (see operationChecksListener):
 * an `operationName` that names no operation, or several operations without one: 400
 * OPERATION_RESOLUTION_FAILURE (Apollo lets this reach plugins and execution, where it became a 500).
 * @throws GraphQLError OPERATION_RESOLUTION_FAILURE (HTTP 400)
 */
export function checkOperationResolved({ operation, document, request }: OperationCheckContext): void {
  if (!operation) {
    throw new GraphQLError(unresolvedOperationMessage(document, request.operationName), {
      extensions: { code: 'OPERATION_RESOLUTION_FAILURE', http: { status: 400 } },
    });
  }
}

/**
 * Any `persistedQuery` extension: 400 PERSISTED_QUERY_NOT_SUPPORTED, in words. Automatic persisted queries are
 * turned off (`persistedQueries: false`): every answer is `no-store` and every request but sign-in is
 * authenticated, so there is no cache for hashes to help, and the APQ store would let anonymous clients fill
 * server memory. Apollo answers this code with HTTP 200 for its own client's fallback; Apollo Client also falls
 * back on a 400 that carries the code, and a 400 says plainly that the request was refused. Changes `response`.
 */
export function refusePersistedQueries(response: GraphQLResponse): void {
  if (response.body.kind !== 'single') return;
  const errors = response.body.singleResult.errors;
  if (!errors) return;
  for (const error of errors) {
    if (error.extensions?.code === 'PERSISTED_QUERY_NOT_SUPPORTED') {
      (error as { message: string }).message = PERSISTED_QUERIES_OFF;
      response.http.status = 400;
    }
  }
}

/** The fragments `operation` spreads, directly or through other fragments. */
function fragmentsOf(document: DocumentNode, root: ASTNode): FragmentDefinitionNode[] {
  const byName = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) byName.set(definition.name.value, definition);
  }
  const reached = new Map<string, FragmentDefinitionNode>();
  const pending: ASTNode[] = [root];
  while (pending.length > 0) {
    visit(pending.pop()!, {
      FragmentSpread(spread) {
        const fragment = byName.get(spread.name.value);
        if (fragment && !reached.has(fragment.name.value)) {
          reached.set(fragment.name.value, fragment);
          pending.push(fragment);
        }
      },
    });
  }
  return [...reached.values()];
}

/**
 * A variable of a nullable type with a default may stand where a value is required (validation allows it); sent
 * as an explicit null, graphql-js finds that only while executing (in a directive's `if`, or a field's required
 * argument), as an error without a code that was masked as INTERNAL_SERVER_ERROR and logged as unexpected.
 * Refused here first. Costs nothing unless such a variable is null: only then is the operation walked.
 * @throws DomainError BAD_USER_INPUT (HTTP 400) naming the variable
 */
export function checkNullVariables({ document, operation, request, schema }: OperationCheckContext): void {
  if (!operation?.variableDefinitions?.length || !request.variables) return;
  let nulled: Set<string> | undefined;
  for (const definition of operation.variableDefinitions) {
    const name = definition.variable.name.value;
    if (definition.defaultValue && definition.type.kind !== Kind.NON_NULL_TYPE && request.variables[name] === null) {
      (nulled ??= new Set()).add(name);
    }
  }
  if (!nulled) return;
  const typeInfo = new TypeInfo(schema);
  const visitor = visitWithTypeInfo(typeInfo, {
    Variable(node) {
      const name = node.name.value;
      if (nulled.has(name) && isNonNullType(typeInfo.getInputType())) {
        throw new DomainError(
          `Variable "$${name}" is null where a value is required: give a value or leave it out.`,
          'BAD_USER_INPUT',
          {
            field: name,
            http: { status: 400 },
          },
        );
      }
    },
  });
  for (const node of [operation, ...fragmentsOf(document, operation)]) visit(node, visitor);
}
