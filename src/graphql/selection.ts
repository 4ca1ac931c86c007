import {
  type FieldNode,
  type FragmentSpreadNode,
  getDirectiveValues,
  GraphQLIncludeDirective,
  type GraphQLResolveInfo,
  GraphQLSkipDirective,
  type InlineFragmentNode,
  type SelectionSetNode,
} from 'graphql';

/** Whether `@skip`/`@include` keep a selection, for this request's variables (as graphql-js decides it). */
function included(node: FieldNode | FragmentSpreadNode | InlineFragmentNode, info: GraphQLResolveInfo): boolean {
  if (!node.directives?.length) return true;
  if (getDirectiveValues(GraphQLSkipDirective, node, info.variableValues)?.if === true) return false;
  return getDirectiveValues(GraphQLIncludeDirective, node, info.variableValues)?.if !== false;
}

/**
 * The names (not aliases) of the fields the operation selects at `path` below the field being resolved,
 * through fragments and inline fragments, with `@skip`/`@include` applied: e.g. `['edges', 'node']` under
 * `users` gives the User fields a page resolves. Type conditions are not checked (the paths this serves have
 * one object type each). Empty when nothing is selected there.
 */
export function selectedFieldNames(info: GraphQLResolveInfo, path: readonly string[]): Set<string> {
  const names = new Set<string>();
  const visit = (selectionSet: SelectionSetNode | undefined, depth: number, seen: Set<string>): void => {
    if (!selectionSet) return;
    for (const selection of selectionSet.selections) {
      if (!included(selection, info)) continue;
      if (selection.kind === 'InlineFragment') {
        visit(selection.selectionSet, depth, seen);
      } else if (selection.kind === 'FragmentSpread') {
        const fragment = info.fragments[selection.name.value];
        // A fragment spread twice on one path is read once (a cycle is already refused by validation).
        if (fragment && !seen.has(fragment.name.value)) {
          visit(fragment.selectionSet, depth, new Set(seen).add(fragment.name.value));
        }
      } else if (depth === path.length) {
        names.add(selection.name.value);
      } else if (selection.name.value === path[depth]) {
        visit(selection.selectionSet, depth + 1, seen);
      }
    }
  };
  for (const node of info.fieldNodes as readonly FieldNode[]) visit(node.selectionSet, 0, new Set());
  return names;
}
