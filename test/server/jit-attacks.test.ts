import { buildSchema, execute, type GraphQLObjectType, type OperationDefinitionNode, parse } from 'graphql';

import { jitExecutionPlugin } from '../../src/graphql/jit-execution';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Attacks on the graphql-jit path (src/graphql/jit-execution.ts): each request is sent twice, the first answered
 * by graphql-js, the second by graphql-jit; what graphql-js did is the rule.
 */
describe('graphql-jit, attacked: the second use must do what the first did', () => {
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app, 'Jit Attack Org');
    await createUser(app, admin, { role: Role.MEMBER });
  });
  afterAll(() => app.close());

  async function send(query: string, variables?: Record<string, unknown>): Promise<{ status: number; text: string }> {
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-access-key': admin.key },
      body: JSON.stringify({ query, variables }),
    });
    return {
      status: response.status,
      text: (await response.text()).replace(/"requestId":"[^"]*"/g, '"requestId":"-"'),
    };
  }

  async function keyViews(): Promise<number> {
    const [{ count }] = await app.dataSource.query(
      `SELECT count(*)::int AS count FROM audit_events WHERE action = 'ACCESS_KEY_VIEWED'`,
    );
    return count;
  }

  // graphql-jit writes an argument literal into its generated code as JSON, then replaces `"__MAGIC_DATE__<uuid><any>"`
  // (a marker public in its source) by `new Date(<any>)`: a string literal carrying the marker is code, run by the
  // process on every use from the second on. No key needed: the request runs before `users` refuses it.
  it('an argument literal is never run as code (graphql-jit MAGIC_DATE marker)', async () => {
    const marker = '__MAGIC_DATE__33a9e76d_02e0_4128_8e92_3530ad3da74d';
    const query = `{ __typename users(after: "${marker}(globalThis.jitAttackRan = (globalThis.jitAttackRan || 0) + 1, 0)") { totalCount } }`;
    const global = globalThis as { jitAttackRan?: number };
    for (let i = 0; i < 3; i++) {
      await fetch(app.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query }),
      });
    }
    expect(global.jitAttackRan).toBeUndefined();
  });

  // graphql-jit stores @skip/@include conditions on the (shared, Apollo-cached) FieldNode of a fragment and ANDs
  // those of every place the fragment is spread: `other`, which has no condition, loses `email` when $a is false.
  it('a fragment spread under @include in one place and plainly in another answers as graphql-js', async () => {
    const query = `query ($a: Boolean!) { me { ...F @include(if: $a) } other: me { ...F } }
      fragment F on User { email } # fragment conditions`;
    const first = await send(query, { a: false });
    expect(JSON.parse(first.text).data.other.email).toBe(admin.email);
    const second = await send(query, { a: false });
    expect(second).toEqual(first);
  });

  // The same through two operations of one document: compiling A leaves A's condition on F's field nodes, which
  // then hold in B (a variable B does not even have).
  it('one operation of a document does not change what another answers', async () => {
    const query = `query A($a: Boolean!) { me { ...F @include(if: $a) } } query B { me { ...F } }
      fragment F on User { email } # two operations`;
    const send2 = (operationName: string, variables?: Record<string, unknown>) =>
      fetch(app.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-access-key': admin.key },
        body: JSON.stringify({ query, operationName, variables }),
      }).then((response) => response.text());
    await send2('A', { a: true });
    await send2('A', { a: true }); // A compiled
    const first = await send2('B'); // graphql-js
    const second = await send2('B'); // graphql-jit, compiled after A
    expect(JSON.parse(first).data.me.email).toBe(admin.email);
    expect(second).toEqual(first);
  });

  // graphql-jit hands a resolver every FieldNode of a response key, skipped ones included (graphql-js only those
  // kept): `users` reads `accessKey` in a skipped node (selectedFieldNames), reveals and audits the keys as viewed,
  // though the answer shows none.
  it('a skipped selection of accessKey reveals nothing and audits no view', async () => {
    const query = `{ users(first: 5) { edges { node { id } } }
      users(first: 5) @skip(if: true) { edges { node { accessKey } } } } # skipped reveal`;
    const before = await keyViews();
    const first = await send(query);
    expect(first.text).not.toContain('cak_');
    expect(await keyViews()).toBe(before);
    const second = await send(query);
    expect(second).toEqual(first);
    expect(await keyViews()).toBe(before);
  });
});

/**
 * A list of non-null items where more than one item fails: graphql-js stops at the first (the list becomes null
 * with one error, one log line), graphql-jit reports each failing item (as many errors, masked errors and
 * error-level log lines). In the service: `users { edges { node { organization { id } } } }` when several
 * nodes' non-null fields fail (a database outage under way, NOT_FOUND), on a small schema here. The rule is
 * graphql-js's answer: each case runs a document twice through the plugin (the first use is graphql-js's, the
 * plugin answers null; the second graphql-jit's) and compares the errors with graphql-js's own execution.
 */
describe('graphql-jit, attacked: several failing items of a non-null list', () => {
  const schema = buildSchema(`
    type Query { items: [Item!] required: [Item!]! groups: [Group!]! loose: [Loose] mixed: [Mixed!] one: Item! opt: Item }
    type Group { id: ID! items: [Item!] }
    type Item { id: ID! name: String! }
    type Loose { id: ID! note: String }
    type Mixed { id: ID! note: String name: String! }`);
  const fields = schema.getQueryType()!.getFields();
  const failing = () => [1, 2, 3, 4].map((id) => ({ id, name: id % 2 === 0 ? null : `n${id}` }));
  (fields.items as { resolve?: unknown }).resolve = failing;
  (fields.required as { resolve?: unknown }).resolve = failing;
  (fields.one as { resolve?: unknown }).resolve = () => ({ id: 1, name: null });
  (fields.opt as { resolve?: unknown }).resolve = () => ({ id: 2, name: null });
  (fields.groups as { resolve?: unknown }).resolve = () =>
    [{ id: 1 }, { id: 2 }, { id: 3 }].map((g) => ({ ...g, items: failing() }));
  (fields.loose as { resolve?: unknown }).resolve = () => [1, 2, 3].map((id) => ({ id }));
  // Field resolvers, not function-valued properties: graphql-jit does not call those (it would report a
  // serialization error at the same path, and the case would pass for another reason).
  (schema.getType('Loose') as GraphQLObjectType).getFields().note.resolve = ({ id }: { id: number }) =>
    Promise.reject(new Error(`note ${id} failed`));

  // The first item's nullable note fails (null, reported), then the second item's non-null name nulls the list.
  (fields.mixed as { resolve?: unknown }).resolve = () =>
    [1, 2, 3, 4].map((id) => ({ id, name: id % 2 === 0 ? null : `n${id}` }));
  (schema.getType('Mixed') as GraphQLObjectType).getFields().note.resolve = ({ id }: { id: number }) => {
    if (id === 1) throw new Error('note 1 failed');
    return 'fine';
  };

  /** graphql-js's own result, graphql-jit's answer through the plugin, and the error counts didEncounterErrors saw. */
  async function answersOf(query: string) {
    const encountered: number[] = [];
    const plugin = jitExecutionPlugin<any>({
      schema,
      formatError: (formatted) => formatted,
      includeStacktraceInErrorResponses: false,
      didEncounterErrors: ({ errors }) => void encountered.push(errors.length),
    });
    const document = parse(query);
    const operation = document.definitions[0] as OperationDefinitionNode;
    const expected = await execute({ schema, document });
    const listener = await plugin.requestDidStart!({} as never);
    const answers: unknown[] = [];
    for (let i = 0; i < 2; i++) {
      const context = { request: { variables: {} }, document, operation, contextValue: {} };
      const response = await listener!.responseForOperation!(context as never);
      answers.push(response && response.body.kind === 'single' ? response.body.singleResult : null);
    }
    const jit = answers[1] as { data: unknown; errors: Array<{ path: unknown }> };
    return { expected, jit, encountered };
  }

  it.each([
    ['a nullable list: one error, the list null', '{ items { id name } }', 1],
    ['a non-null list: one error, the data null', '{ required { id name } }', 1],
    ['lists in a list: one error for each list that became null', '{ groups { id items { name } } }', 3],
    ['nullable items: one error for each item', '{ loose { id note } }', 3],
    ['an item reported before another nulled the list: both errors', '{ mixed { id note name } }', 2],
    // An error that nulls `data` after another error was reported: both, the second explaining the null.
    ['a nullable list, then a non-null one: both errors', '{ items { name } required { name } }', 2],
    ['a nullable field, then a non-null one: both errors', '{ opt { name } one { name } }', 2],
    ['a non-null list first: one error, the rest never ran', '{ required { name } items { name } }', 1],
    [
      'the same key through fragments on the query type',
      '{ ...A ...B } fragment A on Query { items { id } } fragment B on Query { items { name } }',
      1,
    ],
  ])('%s, as graphql-js reports', async (_case, query, count) => {
    const { expected, jit, encountered } = await answersOf(query);
    expect(expected.errors).toHaveLength(count);
    expect(jit.data).toEqual(expected.data);
    expect(jit.errors.map((error) => error.path)).toEqual(expected.errors!.map((error) => error.path));
    expect(encountered).toEqual([count]);
  });
});
