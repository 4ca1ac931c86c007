import {
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';

import { LimitError, MAX_INTROSPECTION_DEPTH, type QueryLimits } from './query-limits';

/** The limits the walk checks, and the cost limit that bounds the walk itself. */
type WalkLimits = Pick<QueryLimits, 'maxFieldRepeats' | 'maxFragmentSpreads' | 'maxCost' | 'maxDepth'>;

/** The fragments a selection set was reached through, innermost first: a spread of one of them is a cycle. */
interface FragmentChain {
  readonly name: string;
  readonly outer: FragmentChain | null;
}

/**
 * A selection set merged into a place, with the fragments it came through, and how many inline fragments its
 * path nests it in (from the operation's root: each is a level as a field is, see PlaceWalk.place).
 */
interface Reached {
  readonly selectionSet: SelectionSetNode;
  readonly via: FragmentChain | null;
  readonly inline: number;
}

/** The most of a place's path a message repeats: its end, where the repeats are. */
const MAX_SHOWN_PATH = 200;

/** A place as messages name it, in quotes: `"me.organization"`, its end only when long. */
function shown(path: string): string {
  return `"${path.length > MAX_SHOWN_PATH ? `...${path.slice(-MAX_SHOWN_PATH)}` : path}"`;
}

function within(chain: FragmentChain | null, name: string): boolean {
  for (let link = chain; link; link = link.outer) if (link.name === name) return true;
  return false;
}

/** Thrown inside the walk to end it at the first limit hit. */
class Refused {
  constructor(readonly error: LimitError) {}
}

/**
 * Walks a document place by place, as its answer would merge it: a place is a response path (`me.organization`),
 * and what sits there is every selection set the fields of that path select, from every parent merged there and
 * every fragment spread into it, as graphql-js's OverlappingFieldsCanBeMerged rule compares them. A fragment
 * spread twice into one place is merged once (as graphql-js collects it), and a spread of a fragment inside itself
 * (a cycle, refused by validation after this) is not followed. Every selection visited counts toward `budget`, so
 * the walk never does more than that much work, however the fragments nest.
 */
class PlaceWalk {
  private visited = 0;
  /** Fragments merged somewhere: each one's own selection sets were checked as part of that place. */
  readonly expanded = new Set<string>();

  /**
   * Repeats allowed of a field without a selection set (a leaf): one more for each fragment that may be spread
   * into its place, since clients add the same leaf to every fragment (Apollo Client's `__typename`, Relay's
   * `id`). Comparing two leaves is cheap (no selections under them to compare).
   */
  private readonly maxLeafRepeats: number;
  /**
   * How deep a place may be: the deeper of the two depth limits (queries' and introspection's), which validation
   * is followed by (queryLimitsCheck); checked here because validation's work grows with the depth of repeats too.
   */
  private readonly maxDepth: number;

  constructor(
    private readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>,
    private readonly limits: Pick<QueryLimits, 'maxFieldRepeats' | 'maxFragmentSpreads' | 'maxDepth'>,
    private readonly budget: number,
  ) {
    this.maxLeafRepeats = limits.maxFieldRepeats + limits.maxFragmentSpreads;
    this.maxDepth = Math.max(limits.maxDepth, MAX_INTROSPECTION_DEPTH);
  }

  /**
   * `depth`: how deep the fields of this place are (1 at an operation's root). A level is a field or an inline
   * fragment: inline fragments nest without a field between them (`{ ... { ... { id } } }`), and validation,
   * execution and Apollo's document store each recurse once per level, so they count toward the depth too.
   * @throws Refused at the first limit the place, or a place under it, goes over
   */
  place(sets: readonly Reached[], path: string | null, depth: number): void {
    let inlineAbove = 0;
    for (const reached of sets) inlineAbove = Math.max(inlineAbove, reached.inline);
    if (depth + inlineAbove > this.maxDepth) throw new Refused(this.tooDeep(path));
    const byResponseName = new Map<string, Reached[]>();
    const spread = new Set<string>();
    const collect = ({ selectionSet, via, inline }: Reached): void => {
      for (const selection of selectionSet.selections) {
        if (++this.visited > this.budget) throw new Refused(this.tooLarge());
        if (selection.kind === Kind.FIELD) {
          const name = selection.alias?.value ?? selection.name.value;
          let merged = byResponseName.get(name);
          if (!merged) byResponseName.set(name, (merged = []));
          // A leaf is kept too: it counts as a repeat, though it has nothing under it.
          merged.push({ selectionSet: selection.selectionSet ?? EMPTY, via, inline });
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          // Its fields are one level deeper than this place's: checked before going in, so the walk's own
          // recursion is bounded too.
          if (depth + inline + 1 > this.maxDepth) throw new Refused(this.tooDeep(path));
          collect({ selectionSet: selection.selectionSet, via, inline: inline + 1 });
        } else {
          const name = selection.name.value;
          if (spread.has(name) || within(via, name)) continue;
          spread.add(name);
          // At once, not once the place is collected: this also bounds how deep the spreads nest.
          if (spread.size > this.limits.maxFragmentSpreads) throw new Refused(this.tooManySpreads(path));
          this.expanded.add(name);
          const fragment = this.fragments.get(name);
          if (fragment) collect({ selectionSet: fragment.selectionSet, via: { name, outer: via }, inline });
        }
      }
    };
    for (const reached of sets) collect(reached);
    for (const [name, merged] of byResponseName) {
      const leaf = merged.every((reached) => reached.selectionSet === EMPTY);
      const max = leaf ? this.maxLeafRepeats : this.limits.maxFieldRepeats;
      if (merged.length > max) {
        throw new Refused(
          new LimitError(
            `The operation selects ${shown(path ? `${path}.${name}` : name)} ${merged.length} times in one place ` +
              `(repeated, or through fragments); at most ${max} selections of ` +
              (leaf ? 'a field without a selection set' : 'one field (name or alias)') +
              ' are allowed in one place. Select it once.',
            'TOO_MANY_REPEATED_FIELDS',
          ),
        );
      }
    }
    for (const [name, merged] of byResponseName) {
      const below = merged.filter((reached) => reached.selectionSet !== EMPTY);
      if (below.length > 0) this.place(below, path ? `${path}.${name}` : name, depth + 1);
    }
  }

  /** `depth` counts the inline fragments around a place's fields as levels too (see place). */
  private tooDeep(path: string | null): LimitError {
    return new LimitError(
      `The operation is more than ${this.maxDepth} levels deep, counting fields and inline fragments (at ` +
        `${path ? shown(path) : "the operation's root"}); at most ${this.limits.maxDepth} are allowed (${MAX_INTROSPECTION_DEPTH} for ` +
        'introspection).',
      'QUERY_TOO_DEEP',
    );
  }

  private tooManySpreads(path: string | null): LimitError {
    const max = this.limits.maxFragmentSpreads;
    return new LimitError(
      `The operation spreads more than ${max} fragments into ${path ? shown(path) : 'one place'} (directly or ` +
        `through other fragments); at most ${max} may be spread into one place.`,
      'TOO_MANY_FRAGMENT_SPREADS',
    );
  }

  /** The walk's budget covers the whole document (every operation and fragment), not the one operation run. */
  private tooLarge(): LimitError {
    return new LimitError(
      `The document is too large: its operations (all of them, not only the one run), written out with their ` +
        `fragments, make more than ${this.budget} selections; at most ${this.budget} are allowed.`,
      'QUERY_TOO_COMPLEX',
    );
  }
}

const EMPTY: SelectionSetNode = { kind: Kind.SELECTION_SET, selections: [] };

/**
 * The first limit `document` goes over, or null: repeats of one response name at one place (maxFieldRepeats; a
 * leaf, maxFieldRepeats + maxFragmentSpreads), distinct fragments spread into one place (maxFragmentSpreads), places
 * deeper than the deeper depth limit (QUERY_TOO_DEEP), and, for the walk itself, more than `maxCost`
 * selections visited (QUERY_TOO_COMPLEX: a document that large costs more than maxCost anyway). Every operation is
 * a place of its own, and so is every fragment no operation spreads (validation looks at those too). Time and
 * memory grow with the selections visited, at most maxCost.
 */
export function selectionLimitsError(document: DocumentNode, limits: WalkLimits): LimitError | null {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const walk = new PlaceWalk(fragments, limits, limits.maxCost);
  try {
    for (const definition of document.definitions) {
      if (definition.kind === Kind.OPERATION_DEFINITION)
        walk.place([{ selectionSet: definition.selectionSet, via: null, inline: 0 }], null, 1);
    }
    for (const [name, fragment] of fragments) {
      // A fragment merged into a place was checked there: its places are parts of that place's.
      if (walk.expanded.has(name)) continue;
      walk.expanded.add(name);
      walk.place([{ selectionSet: fragment.selectionSet, via: { name, outer: null }, inline: 0 }], null, 1);
    }
  } catch (error) {
    if (error instanceof Refused) return error.error;
    throw error;
  }
  return null;
}

/**
 * Why not a library: graphql-armor's limits are validation rules that report in the same pass as graphql-js's own
 * (they do not stop OverlappingFieldsCanBeMerged), and none counts repeats; graphql-js's own budget for that rule
 * stops it only after hundreds of milliseconds (docs/performance.md, 2026-12-02).
 *
 * A validation rule that refuses, before the rest of validation runs, a document whose selections would make
 * validation slow: graphql-js's OverlappingFieldsCanBeMerged compares every two selections of one response name at
 * one place, and every two fragments spread into one place, so its work grows with the square of those counts,
 * before any of the limits checked later (depth, aliases, cost; see queryLimitsCheck) could refuse the document.
 * This rule comes after graphql-js's own (Apollo appends `validationRules` to them), and its check is the first
 * thing validation does past the document's root: on the Document it reports the refusal and returns `null`, which
 * in graphql-js's visitor means "remove this node", so no rule visits anything under it. Apollo answers the report
 * as a validation error (HTTP 400; errorFormatter gives back the limit's code), and validation only runs on a
 * document Apollo has not validated before, so a document sent again costs nothing here.
 */
export function selectionLimitsRule(limits: WalkLimits): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    Document(node) {
      const error = selectionLimitsError(node, limits);
      if (!error) return undefined;
      context.reportError(error);
      return null;
    },
  });
}
