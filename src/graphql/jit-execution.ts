import { dirname, join } from 'node:path';

import type {
  ApolloServerPlugin,
  BaseContext,
  GraphQLRequestContextDidEncounterErrors,
  GraphQLRequestContextResponseForOperation,
  GraphQLRequestListener,
  GraphQLResponse,
} from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import {
  BREAK,
  type DocumentNode,
  type ExecutionResult,
  type FieldNode,
  type FragmentDefinitionNode,
  getNamedType,
  getNullableType,
  type GraphQLCompositeType,
  GraphQLError,
  type GraphQLField,
  type GraphQLFormattedError,
  type GraphQLOutputType,
  type GraphQLSchema,
  isListType,
  isNonNullType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
  visit,
} from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';

import { listenerPlugin } from '../server/request-listeners';

/** What is known of one operation of a cached document: seen once, compiled, or not compilable. */
type Compilation = 'seen-once' | CompiledQuery | 'not-compilable';

/** Apollo Server's own error formatting (what it applies to graphql-js's errors), see loadApolloFormatting. */
type NormalizeAndFormatErrors = (
  errors: ReadonlyArray<unknown>,
  options: {
    formatError?: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
    includeStacktraceInErrorResponses?: boolean;
  },
) => { formattedErrors: GraphQLFormattedError[]; httpFromErrors: GraphQLResponse['http'] };

/**
 * Apollo Server 5's `normalizeAndFormatErrors` (dist/cjs/errorNormalize.js): the one function Apollo runs on an
 * execution's errors (the code INTERNAL_SERVER_ERROR where none is set, `extensions.http` taken out into the
 * answer's status and headers, then our formatError, and "Internal server error" when that throws). It is not
 * exported, so it is loaded from Apollo's own file rather than written again here: the answers stay Apollo's
 * when Apollo changes it, and a release that moves it fails at startup, not silently.
 * @throws Error when the installed Apollo Server has no such function
 */
function loadApolloFormatting(): NormalizeAndFormatErrors {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const loaded = require(join(dirname(require.resolve('@apollo/server')), 'errorNormalize.js')) as {
    normalizeAndFormatErrors?: NormalizeAndFormatErrors;
  };
  if (typeof loaded.normalizeAndFormatErrors !== 'function')
    throw new Error('@apollo/server has no normalizeAndFormatErrors in errorNormalize.js: check jitExecutionPlugin');
  return loaded.normalizeAndFormatErrors;
}

export interface JitExecutionOptions<C extends BaseContext> {
  schema: GraphQLSchema;
  /** The `formatError` given to ApolloServer: applied to graphql-jit's errors as Apollo applies it. */
  formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
  /** Apollo's `includeStacktraceInErrorResponses`, as given to ApolloServer. */
  includeStacktraceInErrorResponses: boolean;
  /**
   * The `didEncounterErrors` hook(s) of the other plugins, which Apollo does not call for an answer a
   * `responseForOperation` hook made: called here as Apollo would, with the errors before formatting.
   */
  didEncounterErrors: (context: GraphQLRequestContextDidEncounterErrors<C>) => void | Promise<void>;
  /** Bounds of the compilation's CPU and memory (DEFAULT_COMPILATION_LIMITS; tests give their own). */
  limits?: CompilationLimits;
}

/** How much compiling graphql-jit may do (see CompiledOperations). */
export interface CompilationLimits {
  /** Milliseconds of compiling a second may take on average (the rate the budget fills at). */
  budgetMsPerSecond: number;
  /** Milliseconds of compiling that may be spent at once after a quiet time (the budget's size). */
  burstMs: number;
  /** Compiled operations kept at most; the oldest is dropped (and may compile again later) beyond it. */
  maxCompiled: number;
  /** The clock, in milliseconds (performance.now; tests give their own). */
  now?: () => number;
}

/**
 * Compiling one document takes 0.5-4 ms here (see MAX_COMPILED_PARTS), ten times a request's own work, and
 * each compiled query holds its generated code: a client sending endless new documents, each twice, must not
 * be able to spend the process's CPU or memory on it. 20 ms a second is 2% of a core; 200 operations are more
 * than an application's own documents (each holds its document and code: tens of KB within MAX_COMPILED_PARTS).
 */
export const DEFAULT_COMPILATION_LIMITS: CompilationLimits = { budgetMsPerSecond: 20, burstMs: 200, maxCompiled: 200 };

/**
 * The compiled queries, by Apollo's cached DocumentNode (a WeakMap: they go when Apollo's document store drops
 * the document) and operation name. A document is compiled at its second use (one sent once, as an attacker
 * sending endless new ones would, never is), when the budget allows: the time each compilation took is taken
 * from a budget that fills at `budgetMsPerSecond` up to `burstMs`, and while it is spent documents run in
 * graphql-js (and compile at a later use). At most `maxCompiled` are kept, the oldest dropped first.
 */
export class CompiledOperations {
  private readonly byDocument = new WeakMap<DocumentNode, Map<string, Compilation>>();
  /** The compiled ones, oldest first (Map keeps insertion order): what maxCompiled drops from. */
  private readonly kept = new Map<CompiledQuery, Map<string, Compilation>>();
  private budgetMs: number;
  private filledAt: number;
  private readonly now: () => number;

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly limits: CompilationLimits = DEFAULT_COMPILATION_LIMITS,
  ) {
    this.now = limits.now ?? (() => performance.now());
    this.budgetMs = limits.burstMs;
    this.filledAt = this.now();
  }

  /** The compiled query of `operation` of `document`, or null where graphql-js is to run it this time. */
  compiledFor(document: DocumentNode, operation: OperationDefinitionNode): CompiledQuery | null {
    const name = operation.name?.value ?? '';
    let byName = this.byDocument.get(document);
    if (!byName) {
      byName = new Map();
      this.byDocument.set(document, byName);
    }
    const known = byName.get(name);
    if (known === undefined) {
      byName.set(name, 'seen-once');
      return null;
    }
    if (known === 'not-compilable') return null;
    if (known !== 'seen-once') return known;
    if (!this.mayCompile()) return null;
    const started = this.now();
    const compiled = compilable(document, operation) ? compileOrNull(this.schema, document, name) : null;
    this.budgetMs -= this.now() - started;
    if (!compiled || !isCompiledQuery(compiled)) {
      byName.set(name, 'not-compilable');
      return null;
    }
    byName.set(name, compiled);
    this.kept.set(compiled, byName);
    if (this.kept.size > this.limits.maxCompiled) {
      const [oldest, itsDocument] = this.kept.entries().next().value as [CompiledQuery, Map<string, Compilation>];
      this.kept.delete(oldest);
      for (const [oldName, state] of itsDocument) if (state === oldest) itsDocument.set(oldName, 'seen-once');
    }
    return compiled;
  }

  /** Whether the budget has time left, after filling it for the time since it was last filled. */
  private mayCompile(): boolean {
    const now = this.now();
    this.budgetMs = Math.min(
      this.limits.burstMs,
      this.budgetMs + ((now - this.filledAt) * this.limits.budgetMsPerSecond) / 1000,
    );
    this.filledAt = now;
    return this.budgetMs > 0;
  }
}

/**
 * An Apollo plugin whose `responseForOperation` runs a query with graphql-jit from its document's second use:
 * graphql-js allocates per field of every row (argument maps, null-prototype result objects that V8 keeps as
 * dictionaries and JSON.stringify walks slowly), which was the largest cost of a page of 100 users after
 * decryption (docs/performance.md). Apollo still parses, validates and runs our hooks before it; only the
 * execution differs, and the answer is graphql-js's, byte for byte (test/server/jit-answers.test.ts):
 * - graphql-js runs a document's first use, every mutation and subscription, introspection (`__schema`, `__type`
 *   at the top), @skip/@include, string literals with graphql-jit's marker (see compilable), what graphql-jit
 *   cannot compile, and variables that do not coerce (nothing has run then, and
 *   graphql-js words the errors that Apollo answers 400 BAD_USER_INPUT);
 * - graphql-jit's errors are cut to those graphql-js reports (firstErrorOfEachNull) and become graphql-js's
 *   GraphQLError (see toGraphqlJsError), the `didEncounterErrors` hooks run, and Apollo's own formatting applies
 *   (see loadApolloFormatting).
 * The compiled queries hang on Apollo's cached DocumentNode (a WeakMap): they live as long as Apollo's document
 * store keeps the document, and a document sent once (as an attacker sending endless new ones would) is never
 * compiled. Plugins after this one see no `executionDidStart` for what it answers (Apollo's rule for
 * `responseForOperation`); place plugins that observe execution before it.
 * @throws Error at startup when Apollo's formatting cannot be loaded
 */
export function jitExecutionPlugin<C extends BaseContext>(options: JitExecutionOptions<C>): ApolloServerPlugin<C> {
  const normalizeAndFormatErrors = loadApolloFormatting();
  const compilations = new CompiledOperations(options.schema, options.limits);

  const respond = async (
    result: ExecutionResult,
    requestContext: GraphQLRequestContextResponseForOperation<C>,
  ): Promise<GraphQLResponse | null> => {
    // Variables that do not coerce: nothing ran; graphql-js answers (its words, Apollo's 400).
    if (!('data' in result)) return null;
    if (!result.errors?.length) {
      return { http: { status: undefined, headers: new HeaderMap() }, body: { kind: 'single', singleResult: result } };
    }
    const errors = firstErrorOfEachNull(
      result.errors,
      options.schema,
      requestContext.document,
      requestContext.operation,
    ).map(toGraphqlJsError);
    await options.didEncounterErrors({ ...requestContext, errors } as GraphQLRequestContextDidEncounterErrors<C>);
    const { formattedErrors, httpFromErrors } = normalizeAndFormatErrors(errors, {
      formatError: options.formatError,
      includeStacktraceInErrorResponses: options.includeStacktraceInErrorResponses,
    });
    return {
      http: httpFromErrors,
      body: { kind: 'single', singleResult: { data: result.data, errors: formattedErrors } },
    };
  };

  const listener: GraphQLRequestListener<C> = {
    responseForOperation(requestContext) {
      const compiled = compilations.compiledFor(requestContext.document, requestContext.operation);
      if (!compiled) return Promise.resolve(null);
      const answer = compiled.query(undefined, requestContext.contextValue, requestContext.request.variables);
      return answer instanceof Promise
        ? answer.then((result) => respond(result, requestContext))
        : respond(answer, requestContext);
    },
  };
  return listenerPlugin(listener);
}

/**
 * Parts an operation may have to be compiled: its selections counted through its fragments, their arguments with
 * each field of an input object and item of a list written in them, and its variables. graphql-jit writes code
 * for each (fragments inlined), and compiling runs in one go on the event loop, at 0.5 ms for `{ __typename }`,
 * 2.4 ms for the users page (7 parts), 3.6 ms for 90 selections and 17 ms for 216, and 31-150 ms for 60
 * selections with 180 arguments and variables (a busy 2-core machine): one near the query limits would hold
 * every request for seconds. Larger ones run in graphql-js, where the gain is smallest anyway (few rows, many
 * fields).
 */
export const MAX_COMPILED_PARTS = 100;

/**
 * The prefix of graphql-jit 0.8.9's markers for values that JSON cannot hold (`__MAGIC_DATE__...`,
 * `__MAGIC_NAN__...`): it writes a field's literal arguments into its generated code with JSON.stringify and
 * then rewrites the text `"__MAGIC_DATE__<anything but a quote>"` into `new Date(<that text>)`. A string literal
 * carrying a marker (at its start, or after a quote that JSON escapes) would run as code in the service
 * (test/hardening/code-injection.test.ts). Documents with one anywhere in a string literal run in graphql-js.
 */
const GRAPHQL_JIT_MARKER = '__MAGIC_';

/**
 * Queries only, none with a directive on a selection (@skip/@include, see fits), none that asks for __schema or
 * __type at its top, none with a response key `__proto__` (an
 * alias may be any name: graphql-jit writes results as object literals, where that key sets the object's
 * prototype instead of adding a field; graphql-js's null-prototype objects keep it as a field), none with
 * more than MAX_COMPILED_PARTS parts, and none with GRAPHQL_JIT_MARKER in a
 * string literal (its arguments, directives' and variables' defaults, however escaped: the parsed value counts).
 */
function compilable(document: DocumentNode, operation: OperationDefinitionNode): boolean {
  if (operation.operation !== 'query') return false;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions)
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  let parts = operation.variableDefinitions?.length ?? 0;
  const countValue = (value: ValueNode): void => {
    parts++;
    if (value.kind === Kind.OBJECT) for (const field of value.fields) countValue(field.value);
    else if (value.kind === Kind.LIST) for (const item of value.values) countValue(item);
  };
  // Validation has refused fragment cycles and unknown fragments before this runs; the count bounds the walk.
  const fits = (set: SelectionSetNode, top: boolean): boolean => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) for (const argument of selection.arguments ?? []) countValue(argument.value);
      if (++parts > MAX_COMPILED_PARTS) return false;
      // @skip/@include: graphql-jit keeps their conditions on the (shared, Apollo-cached) nodes, ANDing those of every
      // place a fragment is spread, in every operation of the document; and it hands a resolver the skipped nodes
      // of its response key too (info.fieldNodes), where selectedFieldNames finds accessKey and a page reveals
      // and audits keys it does not answer.
      if (selection.directives?.length) return false;
      if (selection.kind === Kind.FIELD) {
        if ((selection.alias ?? selection.name).value === '__proto__') return false;
        if (top && (selection.name.value === '__schema' || selection.name.value === '__type')) return false;
        if (selection.selectionSet && !fits(selection.selectionSet, false)) return false;
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        if (!fits(selection.selectionSet, top)) return false;
      } else {
        const fragment = fragments.get(selection.name.value);
        if (!fragment || !fits(fragment.selectionSet, top)) return false;
      }
    }
    return true;
  };
  if (!fits(operation.selectionSet, true)) return false;
  let marked = false;
  visit(document, {
    StringValue(node) {
      if (!node.value.includes(GRAPHQL_JIT_MARKER)) return undefined;
      marked = true;
      return BREAK;
    },
  });
  return !marked;
}

/**
 * graphql-jit's compilation of `name` of `document`, or null when it throws (what it cannot generate code for):
 * that document runs in graphql-js, as graphql-jit's own "not compiled" answer would make it.
 */
function compileOrNull(
  schema: GraphQLSchema,
  document: DocumentNode,
  name: string,
): CompiledQuery | ExecutionResult | null {
  try {
    return compileQuery(schema, document, name || undefined);
  } catch {
    return null;
  }
}

/**
 * The errors graphql-js reports of `errors` (graphql-jit's, in its order) for `operation` of `document`. An
 * error nulls the nearest nullable position on its path (its field when nullable, the whole `data` at the top):
 * its stop (stopOf). graphql-js stops completing a value at its first error, so a list of non-null items in
 * which several items fail is null with one error, where graphql-jit completes every item and reports each
 * failure (GraphQL spec, "Handling Execution Errors"; test/server/jit-attacks.test.ts). So an error is dropped
 * when an error kept before it stops at or above its own stop: its null is inside a value already null, which
 * that error explains. An error whose stop cannot be told (no path or an empty one, a path the document does
 * not lead to) is kept: this only ever drops an error inside a null another kept error explains.
 */
function firstErrorOfEachNull(
  errors: readonly GraphQLError[],
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
): readonly GraphQLError[] {
  if (errors.length < 2) return errors;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions)
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  /**
   * The values kept errors made null above their own field, by path (keyOf). An error in a nullable field nulls
   * only its own field, under which nothing is reported: it need not be looked up, which keeps a request of
   * thousands of FORBIDDEN `accessKey` fields linear here.
   */
  const nulled = new Set<string>();
  return errors.filter((error) => {
    const path = error.path;
    const stop = path && path.length > 0 ? stopOf(path, { schema, operation, fragments }) : undefined;
    if (!stop) return true;
    let key = '';
    for (let depth = 0; depth <= stop.length; depth++) {
      if (depth > 0) key += keyOf(stop[depth - 1]);
      if (nulled.has(key)) return false;
    }
    if (stop.length < path!.length) nulled.add(key);
    return true;
  });
}

/** One step of a response path as a key part: `.name` or `[index]` (a response name holds neither `.` nor `[`). */
const keyOf = (step: string | number): string => (typeof step === 'number' ? `[${step}]` : `.${step}`);

/**
 * The part of `path` (a response path of `operation`) whose value an error at `path` makes null: up to the last
 * nullable position on it ([] for the whole `data`). The fields of one response key (through fragments on
 * different types) have one type shape, lists and non-null alike: validation refuses a document where they
 * differ (OverlappingFieldsCanBeMergedRule), and Apollo validates before this runs; so the first field's type is
 * the key's. Undefined when the path does not lead through the document's fields.
 */
function stopOf(
  path: ReadonlyArray<string | number>,
  context: {
    schema: GraphQLSchema;
    operation: OperationDefinitionNode;
    fragments: ReadonlyMap<string, FragmentDefinitionNode>;
  },
): ReadonlyArray<string | number> | undefined {
  const root = context.schema.getRootType(context.operation.operation);
  if (!root) return undefined;
  let sets: Array<readonly [SelectionSetNode, GraphQLCompositeType]> = [[context.operation.selectionSet, root]];
  let type: GraphQLOutputType | undefined;
  let stop = 0;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    if (typeof key === 'number') {
      const list = type && getNullableType(type);
      if (!isListType(list)) return undefined;
      type = list.ofType as GraphQLOutputType;
    } else {
      // A name where the path should hold a list index: not a path of this document.
      if (type && isListType(getNullableType(type))) return undefined;
      const found: Array<readonly [FieldNode, GraphQLField<unknown, unknown>]> = [];
      const collect = (set: SelectionSetNode, parent: GraphQLCompositeType): void => {
        for (const selection of set.selections) {
          if (selection.kind === Kind.FIELD) {
            if ((selection.alias ?? selection.name).value !== key) continue;
            const field = 'getFields' in parent ? parent.getFields()[selection.name.value] : undefined;
            if (field) found.push([selection, field]);
            continue;
          }
          const fragment =
            selection.kind === Kind.INLINE_FRAGMENT ? selection : context.fragments.get(selection.name.value);
          // A validated document (Apollo validates before this runs) spreads no fragment within itself.
          if (!fragment) continue;
          const condition = fragment.typeCondition
            ? (context.schema.getType(fragment.typeCondition.name.value) as GraphQLCompositeType | undefined)
            : parent;
          if (condition) collect(fragment.selectionSet, condition);
        }
      };
      for (const [set, parent] of sets) collect(set, parent);
      if (found.length === 0) return undefined;
      type = found[0][1].type;
      sets = found.flatMap(([node, field]) =>
        node.selectionSet ? [[node.selectionSet, getNamedType(field.type) as GraphQLCompositeType] as const] : [],
      );
    }
    if (!isNonNullType(type)) stop = i + 1;
  }
  return path.slice(0, stop);
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
