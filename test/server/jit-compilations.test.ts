import { buildSchema, type DocumentNode, type OperationDefinitionNode, parse } from 'graphql';

import { type CompilationLimits, CompiledOperations, MAX_COMPILED_PARTS } from '../../src/graphql/jit-execution';

/**
 * What graphql-jit compiles and when (src/graphql/jit-execution.ts): a document's second use, within a budget of
 * compiling time and a number kept, and never what it would answer differently or compile too slowly.
 * Pure logic on a small schema, with a clock of the test's own.
 */
const schema = buildSchema(`
  type Query { items(filter: Filter): [Item!]! item(id: ID!): Item }
  input Filter { a: String b: [String] }
  type Mutation { touch: Boolean }
  type Item { id: ID! name: String child: Item }
  directive @tag(name: String) on FIELD
`);

/** A clock that moves `step` ms each time it is read: each compilation (read before and after) "takes" `step`. */
function steppingClock(step: number): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return {
    now: () => (t += step),
    advance: (ms) => {
      t += ms;
    },
  };
}

function operationOf(document: DocumentNode): OperationDefinitionNode {
  return document.definitions.find((d) => d.kind === 'OperationDefinition') as OperationDefinitionNode;
}

const roomy: CompilationLimits = { budgetMsPerSecond: 1000, burstMs: 1_000_000, maxCompiled: 100 };

function uses(operations: CompiledOperations, document: DocumentNode, times: number): unknown[] {
  return Array.from({ length: times }, () => operations.compiledFor(document, operationOf(document)));
}

describe('CompiledOperations', () => {
  it('compiles a document at its second use and keeps that compilation', () => {
    const operations = new CompiledOperations(schema, roomy);
    const document = parse('{ items { id name } }');
    const [first, second, third] = uses(operations, document, 3);
    expect(first).toBeNull();
    expect(second).not.toBeNull();
    expect(third).toBe(second);
  });

  it('keeps each operation of a document apart, by name', () => {
    const operations = new CompiledOperations(schema, roomy);
    const document = parse('query A { items { id } } query B { items { name } }');
    const [a, b] = document.definitions as OperationDefinitionNode[];
    expect(operations.compiledFor(document, a)).toBeNull();
    expect(operations.compiledFor(document, b)).toBeNull();
    const compiledA = operations.compiledFor(document, a);
    const compiledB = operations.compiledFor(document, b);
    expect(compiledA).not.toBeNull();
    expect(compiledB).not.toBeNull();
    expect(compiledA).not.toBe(compiledB);
  });

  it.each([
    ['a mutation', 'mutation { touch }'],
    ['introspection at the top', '{ __schema { queryType { name } } }'],
    ['introspection at the top through an inline fragment', '{ ... on Query { __type(name: "Item") { name } } }'],
    ['introspection at the top through a fragment', '{ ...Q } fragment Q on Query { __schema { types { name } } }'],
    ['an alias __proto__ at the top', '{ __proto__: items { id } }'],
    ['an alias __proto__ in a fragment, deeper', '{ items { ...F } } fragment F on Item { child { __proto__: name } }'],
    // graphql-jit's marker in a string literal, wherever it can be (test/hardening/code-injection.test.ts).
    ['its date marker at the start of an argument', '{ item(id: "__MAGIC_DATE__1),x:1,y:(1") { id } }'],
    ['its marker after an escaped quote', String.raw`{ item(id: "a\"__MAGIC_NAN__1") { id } }`],
    ['its marker written with unicode escapes', String.raw`{ item(id: "\u005F_MAGIC_DATE__1") { id } }`],
    ['its marker in a block string', '{ item(id: """__MAGIC_DATE__1""") { id } }'],
    ['its marker in a directive argument', '{ items @tag(name: "__MAGIC_DATE__1") { id } }'],
    ['its marker in a variable default', 'query ($id: ID = "__MAGIC_DATE__1") { item(id: $id) { id } }'],
    ['its marker in a fragment', '{ ...F } fragment F on Query { item(id: "__MAGIC_PLUS_INFINITY__") { id } }'],
    // graphql-jit ANDs the conditions of every place a fragment is spread, and hands resolvers skipped nodes.
    ['@include on a field', 'query ($a: Boolean!) { items { id name @include(if: $a) } }'],
    ['@skip on a fragment spread, deeper', '{ items { child { ...F @skip(if: true) } } } fragment F on Item { id }'],
    [
      '@include on an inline fragment in a fragment',
      '{ ...Q } fragment Q on Query { ... @include(if: false) { items { id } } }',
    ],
  ])('never compiles %s', (_name, query) => {
    const operations = new CompiledOperations(schema, roomy);
    expect(uses(operations, parse(query), 4)).toEqual([null, null, null, null]);
  });

  it('compiles a document whose marker is only in a comment or a name-like text (the parsed literals count)', () => {
    const operations = new CompiledOperations(schema, roomy);
    const document = parse('{ item(id: "__MAGIC") { id } } # __MAGIC_DATE__1),x:1,y:(1');
    expect(uses(operations, document, 2)[1]).not.toBeNull();
  });

  it(`compiles up to ${MAX_COMPILED_PARTS} parts (selections through fragments), not one more`, () => {
    // `items { ...F }` is 2 selections; F has n - 2 leaves: n in all, counted through the fragment.
    const sized = (n: number) =>
      parse(
        `{ items { ...F } } fragment F on Item { ${Array.from({ length: n - 2 }, (_, i) => `f${i}: id`).join(' ')} }`,
      );
    const operations = new CompiledOperations(schema, roomy);
    expect(uses(operations, sized(MAX_COMPILED_PARTS), 2)[1]).not.toBeNull();
    expect(uses(operations, sized(MAX_COMPILED_PARTS + 1), 3)).toEqual([null, null, null]);
  });

  it.each([
    // variables: k of them, `item(id: $v0)` (1 selection, 1 argument) and `id`: k + 3 parts.
    [
      'variables',
      (n: number) =>
        `query (${Array.from({ length: n - 3 }, (_, i) => `$v${i}: ID`).join(' ')}) { item(id: "1") { id } }`.replace(
          'id: "1"',
          'id: $v0',
        ),
    ],
    // an input object with a list of n - 4 strings: items, the object, its list, the strings, id.
    [
      'the fields and items of a literal argument',
      (n: number) =>
        `{ items(filter: { b: [${Array.from({ length: n - 4 }, (_, i) => `"s${i}"`).join(', ')}] }) { id } }`,
    ],
  ])(`counts %s toward the ${MAX_COMPILED_PARTS} parts`, (_name, sized) => {
    const operations = new CompiledOperations(schema, roomy);
    expect(uses(operations, parse(sized(MAX_COMPILED_PARTS)), 2)[1]).not.toBeNull();
    expect(uses(operations, parse(sized(MAX_COMPILED_PARTS + 1)), 3)).toEqual([null, null, null]);
  });

  it('stops compiling while the budget is spent, and compiles again once it has filled', () => {
    const clock = steppingClock(2);
    // No filling over time in the first part: a budget of 5 ms, each compilation taking 2 (and each fill check 0).
    const limits = { budgetMsPerSecond: 0, burstMs: 5, maxCompiled: 100, now: clock.now };
    const operations = new CompiledOperations(schema, limits);
    const documents = [
      '{ items { id } }',
      '{ items { name } }',
      '{ items { child { id } } }',
      '{ item(id: 1) { id } }',
    ].map((query) => parse(query));
    for (const document of documents) operations.compiledFor(document, operationOf(document));
    // 5 -> 3 -> 1 -> -1: three compile, the fourth finds the budget spent and runs in graphql-js.
    const second = documents.map((document) => operations.compiledFor(document, operationOf(document)));
    expect(second.map((compiled) => compiled !== null)).toEqual([true, true, true, false]);
    expect(operations.compiledFor(documents[3], operationOf(documents[3]))).toBeNull();

    // Filling at 1 ms a second: after 10 s the budget is positive again and the fourth compiles.
    const filling = new CompiledOperations(schema, { ...limits, budgetMsPerSecond: 1 });
    for (const document of documents) uses(filling, document, 2);
    expect(filling.compiledFor(documents[3], operationOf(documents[3]))).toBeNull();
    clock.advance(10_000);
    expect(filling.compiledFor(documents[3], operationOf(documents[3]))).not.toBeNull();
  });

  it('keeps at most maxCompiled, dropping the oldest, which compiles anew at its next use', () => {
    const operations = new CompiledOperations(schema, { ...roomy, maxCompiled: 2 });
    const [a, b, c] = ['{ items { id } }', '{ items { name } }', '{ items { child { id } } }'].map((query) =>
      parse(query),
    );
    const compiledA = uses(operations, a, 2)[1];
    uses(operations, b, 2);
    expect(operations.compiledFor(a, operationOf(a))).toBe(compiledA);
    uses(operations, c, 2);
    // a was dropped: its next use finds it seen once and compiles it again (a new compilation).
    const again = operations.compiledFor(a, operationOf(a));
    expect(again).not.toBeNull();
    expect(again).not.toBe(compiledA);
  });
});
