import type { ApolloServerPlugin } from '@apollo/server';
import {
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
  valueFromASTUntyped,
  visit,
} from 'graphql';
import { DomainError, type ErrorCode } from '../errors';

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxAliases: number;
  readonly maxDirectives: number;
  /** Enforced by the parser itself (Apollo's parseOptions.maxTokens), before any of this runs. */
  readonly maxTokens: number;
  /** Each field costs 1, times the `first` of every list it is inside (its default when not given). */
  readonly maxCost: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = {
  maxDepth: 10,
  maxAliases: 30,
  maxDirectives: 20,
  maxTokens: 5000,
  maxCost: 20_000,
};

/**
 * How deep introspection may go: graphql-js's own introspection query (what GraphiQL sends) is 15 deep with
 * every option on, and some clients nest `ofType` further. (graphql-js's MaxIntrospectionDepthRule already
 * refuses the nested lists that fan out; this bounds the rest.)
 */
export const MAX_INTROSPECTION_DEPTH = 20;

/** What `first` means when a list field is asked for without it (the schema's default page size). */
const DEFAULT_LIST_SIZE = 50;

class LimitError extends DomainError {
  constructor(message: string, code: ErrorCode) {
    super(message, code, { http: { status: 400 } });
  }
}

function isIntrospection(name: string): boolean {
  return name === '__schema' || name === '__type';
}

/** The paginated lists of the schema: their `first` multiplies the cost of what they contain. */
const LIST_FIELDS = new Set(['users', 'auditEvents']);

function listSize(args: readonly { name: { value: string }; value: ValueNode }[] | undefined, variables: Record<string, unknown>): number {
  const first = args?.find((arg) => arg.name.value === 'first');
  if (!first) return DEFAULT_LIST_SIZE;
  const value = first.value;
  const raw =
    value.kind === Kind.INT ? Number(value.value) : value.kind === Kind.VARIABLE ? variables[value.name.value] : DEFAULT_LIST_SIZE;
  return typeof raw === 'number' && Number.isFinite(raw) && raw >= 0 ? raw : DEFAULT_LIST_SIZE;
}

interface Measure {
  depth: number;
  cost: number;
  /** How deep the introspection fields (`__schema`, `__type`) go: limited apart, since clients' introspection queries are deep. */
  introspectionDepth: number;
}

interface MeasureParams {
  selectionSet: SelectionSetNode;
  fragments: Map<string, FragmentDefinitionNode>;
  variables: Record<string, unknown>;
  /** Each fragment measured once per operation: spreads nested in spreads would otherwise take exponential time. */
  measuredFragments: Map<string, Measure>;
}

/**
 * Depth and cost of a selection set at multiplier 1, fragments expanded (validation has already refused
 * cycles). Cost is linear in the multiplier of the lists around a selection, so a fragment measured once
 * is scaled wherever it is spread, and a walk costs time in proportion to the document, not to its expansion.
 */
function measure(params: MeasureParams): Measure {
  let depth = 0;
  let cost = 0;
  let introspectionDepth = 0;
  for (const selection of params.selectionSet.selections) {
    let inner: Measure;
    if (selection.kind === Kind.FIELD) {
      cost += 1;
      if (!selection.selectionSet) {
        depth = Math.max(depth, 1);
        continue;
      }
      inner = measure({ ...params, selectionSet: selection.selectionSet });
      if (isIntrospection(selection.name.value)) {
        introspectionDepth = Math.max(introspectionDepth, inner.depth + 1);
        cost += inner.cost;
        continue;
      }
      const size = LIST_FIELDS.has(selection.name.value) ? listSize(selection.arguments, params.variables) : 1;
      cost += inner.cost * Math.max(size, 1);
      depth = Math.max(depth, inner.depth + 1);
    } else {
      inner = selection.kind === Kind.INLINE_FRAGMENT ? measure({ ...params, selectionSet: selection.selectionSet }) : measureFragment(params, selection.name.value);
      cost += inner.cost;
      depth = Math.max(depth, inner.depth);
    }
    introspectionDepth = Math.max(introspectionDepth, inner.introspectionDepth);
  }
  return { depth, cost, introspectionDepth };
}

function measureFragment(params: MeasureParams, name: string): Measure {
  let known = params.measuredFragments.get(name);
  if (!known) {
    const fragment = params.fragments.get(name);
    known = fragment ? measure({ ...params, selectionSet: fragment.selectionSet }) : { depth: 0, cost: 0, introspectionDepth: 0 };
    params.measuredFragments.set(name, known);
  }
  return known;
}

/** Apollo hands back the same parsed document for the same query text, so each is counted once. */
const counted = new WeakMap<DocumentNode, { aliases: number; directives: number }>();

function countAliasesAndDirectives(document: DocumentNode): { aliases: number; directives: number } {
  const known = counted.get(document);
  if (known) return known;
  let aliases = 0;
  let directives = 0;
  visit(document, {
    Field(node) {
      if (node.alias) aliases++;
    },
    Directive() {
      directives++;
    },
  });
  counted.set(document, { aliases, directives });
  return { aliases, directives };
}

/** The variables as execution will see them: a variable that was not sent takes its declared default. */
function withDefaults(operation: OperationDefinitionNode, variables: Record<string, unknown>): Record<string, unknown> {
  const defaults = (operation.variableDefinitions ?? []).filter(
    (definition) => definition.defaultValue && variables[definition.variable.name.value] === undefined,
  );
  if (defaults.length === 0) return variables;
  const effective = { ...variables };
  for (const definition of defaults) effective[definition.variable.name.value] = valueFromASTUntyped(definition.defaultValue!);
  return effective;
}

/** Measures of operations without variables: those depend on the document alone, so each is measured once. */
const measured = new WeakMap<OperationDefinitionNode, Measure>();

function measureOperation(document: DocumentNode, operation: OperationDefinitionNode, variables: Record<string, unknown>): Measure {
  const known = measured.get(operation);
  if (known) return known;
  const fragments = new Map(
    document.definitions
      .filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION)
      .map((d) => [d.name.value, d]),
  );
  const result = measure({
    selectionSet: operation.selectionSet,
    fragments,
    variables: withDefaults(operation, variables),
    measuredFragments: new Map(),
  });
  if (!operation.variableDefinitions?.length) measured.set(operation, result);
  return result;
}

/**
 * Refuses expensive operations after parsing and validation and before execution, so no resolver (and
 * no database work) ever runs for them: HTTP 400 with a code that says which limit was hit.
 */
export function queryLimitsPlugin(limits: QueryLimits): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ document, operation, request }) {
          // No operation could be picked: requestShapePlugin answers that; there is nothing to measure.
          if (!operation) return;
          const { aliases, directives } = countAliasesAndDirectives(document);
          if (aliases > limits.maxAliases) {
            throw new LimitError(`The operation uses ${aliases} aliases; at most ${limits.maxAliases} are allowed.`, 'TOO_MANY_ALIASES');
          }
          if (directives > limits.maxDirectives) {
            throw new LimitError(
              `The operation uses ${directives} directives; at most ${limits.maxDirectives} are allowed.`,
              'TOO_MANY_DIRECTIVES',
            );
          }
          const { depth, cost, introspectionDepth } = measureOperation(document, operation, request.variables ?? {});
          if (depth > limits.maxDepth) {
            throw new LimitError(`The operation is ${depth} levels deep; at most ${limits.maxDepth} are allowed.`, 'QUERY_TOO_DEEP');
          }
          if (introspectionDepth > MAX_INTROSPECTION_DEPTH) {
            throw new LimitError(
              `The introspection is ${introspectionDepth} levels deep; at most ${MAX_INTROSPECTION_DEPTH} are allowed.`,
              'QUERY_TOO_DEEP',
            );
          }
          if (cost > limits.maxCost) {
            throw new LimitError(
              `The operation would cost ${cost} (each field counts once per item of the lists around it); ` +
                `at most ${limits.maxCost} is allowed. Ask for fewer items with "first".`,
              'QUERY_TOO_COMPLEX',
            );
          }
        },
      };
    },
  };
}
