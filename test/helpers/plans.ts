/** A node of PostgreSQL's EXPLAIN (FORMAT JSON) plan, as far as the tests read it. */
export interface PlanNode {
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** The indexes a plan reads, depth first. */
export function indexesOf(node: PlanNode): string[] {
  return [...(node['Index Name'] ? [node['Index Name']] : []), ...(node.Plans ?? []).flatMap(indexesOf)];
}
