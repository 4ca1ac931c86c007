import {
  type DocumentNode,
  type FragmentDefinitionNode,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  valueFromASTUntyped,
  type ValueNode,
  visit,
} from 'graphql';

import { DomainError, type ErrorCode } from '../errors';
import type { OperationCheck } from './operation-checks';

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxAliases: number;
  readonly maxDirectives: number;
  /** Enforced by the parser itself (Apollo's parseOptions.maxTokens), before any of this runs. */
  readonly maxTokens: number;
  /** Each field costs 1, times the `first` of every list it is an item of (its default when not given). */
  readonly maxCost: number;
  /**
   * Selections of one response name (field name or alias) at one place of the answer, counted through fragments
   * and across the merged parents (see selectionLimitsRule): checked before validation, whose work grows with the
   * square of this number.
   */
  readonly maxFieldRepeats: number;
  /** Distinct fragments spread into one place (directly or through other fragments): also checked before validation. */
  readonly maxFragmentSpreads: number;
}

/** A paginated list field (`users`, `auditEvents`): what its `first` means when absent, and its largest value. */
export interface PagedList {
  readonly defaultFirst: number;
  readonly maxFirst: number;
  /**
   * What one read of the list with a non-empty `filter` adds to the cost, whatever its `first`: each such read
   * is a query of its own, so a request cannot ask for many of them under aliases (see FILTERED_AUDIT_READ_COST).
   */
  readonly filterCost?: number;
}

/** Paginated list fields by name (they are fields of Query, and their names are not reused elsewhere). */
export type PagedLists = Readonly<Record<string, PagedList>>;

export const DEFAULT_QUERY_LIMITS: QueryLimits = {
  maxDepth: 10,
  maxAliases: 30,
  maxDirectives: 20,
  maxTokens: 5000,
  maxCost: 20_000,
  maxFieldRepeats: 10,
  maxFragmentSpreads: 20,
};

/**
 * How deep introspection may go: graphql-js's own introspection query (what GraphiQL sends) is 15 deep with
 * every option on, and some clients nest `ofType` further. (graphql-js's MaxIntrospectionDepthRule already
 * refuses the nested lists that fan out; this bounds the rest.)
 */
export const MAX_INTROSPECTION_DEPTH = 20;

/** A query limit's refusal: HTTP 400 with the limit's own code. */
export class LimitError extends DomainError {
  constructor(message: string, code: ErrorCode) {
    super(message, code, { http: { status: 400 } });
  }
}

/**
 * How many characters a document may hold per token the parser allows (MAX_QUERY_TOKENS): 100,000 by default,
 * several times what a document of that many tokens takes even written out with indentation and comments.
 */
export const MAX_QUERY_CHARS_PER_TOKEN = 20;

/**
 * QUERY_TOO_LARGE when `query` (the request's query text; anything else is left to Apollo's own checks) is longer
 * than MAX_QUERY_CHARS_PER_TOKEN characters per allowed token, else null. Checked before parsing: the token limit
 * does not bound the length (one string or comment token may be most of the body), and graphql-js works out each
 * error's line and column by scanning the text up to it, so a megabyte with a hundred validation errors at its end
 * cost about 200 ms of CPU (tokens of 30 KB each compared by the overlap check, without credentials).
 */
export function queryLengthError(query: unknown, limits: Pick<QueryLimits, 'maxTokens'>): LimitError | null {
  const max = limits.maxTokens * MAX_QUERY_CHARS_PER_TOKEN;
  if (typeof query !== 'string' || query.length <= max) return null;
  return new LimitError(
    `The operation is too large: more than ${max} characters (${MAX_QUERY_CHARS_PER_TOKEN} for each of the ` +
      `${limits.maxTokens} tokens allowed).`,
    'QUERY_TOO_LARGE',
  );
}

function isIntrospection(name: string): boolean {
  return name === '__schema' || name === '__type';
}

/** A `first` outside its list's range, found while measuring: refused before the cost is looked at. */
interface PageSizeViolation {
  readonly list: string;
  readonly maxFirst: number;
  readonly value: number;
}

/**
 * The `first` a list field will run with: the literal, the variable (defaults applied), or the list's default
 * when absent or null. A value that is not a number is left to variable coercion, which refuses it.
 */
function listSize(params: {
  args: readonly { name: { value: string }; value: ValueNode }[] | undefined;
  variables: Record<string, unknown>;
  list: PagedList;
}): number {
  const { args, variables, list } = params;
  const first = args?.find((arg) => arg.name.value === 'first')?.value;
  const raw =
    first?.kind === Kind.INT
      ? Number(first.value)
      : first?.kind === Kind.VARIABLE
        ? variables[first.name.value]
        : undefined;
  return typeof raw === 'number' ? raw : list.defaultFirst;
}

/** Whether a list field is read with a `filter` that holds at least one condition (variables applied). */
function isFiltered(
  args: readonly { name: { value: string }; value: ValueNode }[] | undefined,
  variables: Record<string, unknown>,
): boolean {
  const filter = args?.find((arg) => arg.name.value === 'filter')?.value;
  if (!filter) return false;
  const value = valueFromASTUntyped(filter, variables) as unknown;
  return typeof value === 'object' && value !== null && Object.values(value).some((condition) => condition != null);
}

interface Measure {
  depth: number;
  /** Everything but `edges` directly in this selection set (at any fragment level). */
  cost: number;
  /**
   * What the `edges` fields directly in this selection set cost once: inside a list they are the per-item part
   * (multiplied by `first`), while `totalCount` and `pageInfo` are answered once per list.
   */
  edgesCost: number;
  /** How deep the introspection fields (`__schema`, `__type`) go: limited apart, since clients' introspection queries are deep. */
  introspectionDepth: number;
  pageSizeViolation?: PageSizeViolation;
}

const total = (measure: Measure): number => measure.cost + measure.edgesCost;

interface MeasureParams {
  selectionSet: SelectionSetNode;
  fragments: Map<string, FragmentDefinitionNode>;
  variables: Record<string, unknown>;
  lists: PagedLists;
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
  let edgesCost = 0;
  let introspectionDepth = 0;
  let pageSizeViolation: PageSizeViolation | undefined;
  for (const selection of params.selectionSet.selections) {
    let inner: Measure;
    if (selection.kind === Kind.FIELD) {
      const name = selection.name.value;
      if (!selection.selectionSet) {
        cost += 1;
        depth = Math.max(depth, 1);
        continue;
      }
      inner = measure({ ...params, selectionSet: selection.selectionSet });
      if (isIntrospection(name)) {
        introspectionDepth = Math.max(introspectionDepth, inner.depth + 1);
        cost += 1 + total(inner);
        continue;
      }
      const list = Object.hasOwn(params.lists, name) ? params.lists[name] : undefined;
      if (list) {
        const size = listSize({ args: selection.arguments, variables: params.variables, list });
        if (!(Number.isInteger(size) && size >= 0 && size <= list.maxFirst)) {
          pageSizeViolation ??= { list: name, maxFirst: list.maxFirst, value: size };
        }
        cost += 1 + inner.cost + inner.edgesCost * Math.max(size, 1);
        if (list.filterCost && isFiltered(selection.arguments, params.variables)) cost += list.filterCost;
      } else if (name === 'edges') {
        edgesCost += 1 + total(inner);
      } else {
        cost += 1 + total(inner);
      }
      depth = Math.max(depth, inner.depth + 1);
    } else {
      inner =
        selection.kind === Kind.INLINE_FRAGMENT
          ? measure({ ...params, selectionSet: selection.selectionSet })
          : measureFragment(params, selection.name.value);
      cost += inner.cost;
      edgesCost += inner.edgesCost;
      depth = Math.max(depth, inner.depth);
    }
    introspectionDepth = Math.max(introspectionDepth, inner.introspectionDepth);
    pageSizeViolation ??= inner.pageSizeViolation;
  }
  return { depth, cost, edgesCost, introspectionDepth, pageSizeViolation };
}

function measureFragment(params: MeasureParams, name: string): Measure {
  let known = params.measuredFragments.get(name);
  if (!known) {
    const fragment = params.fragments.get(name);
    known = fragment
      ? measure({ ...params, selectionSet: fragment.selectionSet })
      : { depth: 0, cost: 0, edgesCost: 0, introspectionDepth: 0 };
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
  for (const definition of defaults)
    effective[definition.variable.name.value] = valueFromASTUntyped(definition.defaultValue!);
  return effective;
}

/** Measures of operations without variables: those depend on the document alone, so each is measured once. */
const measured = new WeakMap<OperationDefinitionNode, Measure>();

function measureOperation(params: {
  document: DocumentNode;
  operation: OperationDefinitionNode;
  variables: Record<string, unknown>;
  lists: PagedLists;
}): Measure {
  const { document, operation, variables, lists } = params;
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
    lists,
    measuredFragments: new Map(),
  });
  if (!operation.variableDefinitions?.length) measured.set(operation, result);
  return result;
}

/**
 * Refuses expensive operations after parsing and validation and before execution, so no resolver (and
 * no database work) ever runs for them: HTTP 400 with a code that says which limit was hit. A page larger
 * than its list allows (`lists`) is BAD_USER_INPUT on `first`, checked before the cost it would add. The check
 * runs in operationChecksListener.
 * @throws LimitError (HTTP 400, a code per limit), DomainError BAD_USER_INPUT (a page too large)
 */
export function queryLimitsCheck(limits: QueryLimits, lists: PagedLists): OperationCheck {
  return ({ document, operation, request }) => {
    // No operation could be picked: checkOperationResolved answers that; there is nothing to measure.
    if (!operation) return;
    const { aliases, directives } = countAliasesAndDirectives(document);
    if (aliases > limits.maxAliases) {
      throw new LimitError(
        `The operation uses ${aliases} aliases; at most ${limits.maxAliases} are allowed.`,
        'TOO_MANY_ALIASES',
      );
    }
    if (directives > limits.maxDirectives) {
      throw new LimitError(
        `The operation uses ${directives} directives; at most ${limits.maxDirectives} are allowed.`,
        'TOO_MANY_DIRECTIVES',
      );
    }
    const measured = measureOperation({ document, operation, variables: request.variables ?? {}, lists });
    const { depth, introspectionDepth, pageSizeViolation } = measured;
    const cost = total(measured);
    if (depth > limits.maxDepth) {
      throw new LimitError(
        `The operation is ${depth} levels deep; at most ${limits.maxDepth} are allowed.`,
        'QUERY_TOO_DEEP',
      );
    }
    if (introspectionDepth > MAX_INTROSPECTION_DEPTH) {
      throw new LimitError(
        `The introspection is ${introspectionDepth} levels deep; at most ${MAX_INTROSPECTION_DEPTH} are allowed.`,
        'QUERY_TOO_DEEP',
      );
    }
    if (pageSizeViolation) {
      const { list, maxFirst, value } = pageSizeViolation;
      throw new DomainError(`"first" of ${list} must be from 0 to ${maxFirst}; got ${value}.`, 'BAD_USER_INPUT', {
        field: 'first',
        http: { status: 400 },
      });
    }
    if (cost > limits.maxCost) {
      throw new LimitError(
        `The operation would cost ${cost} (each field counts once per item of the lists it is in); ` +
          `at most ${limits.maxCost} is allowed. Ask for fewer items with "first".`,
        'QUERY_TOO_COMPLEX',
      );
    }
  };
}
