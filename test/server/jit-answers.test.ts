import type { ApolloServerPlugin } from '@apollo/server';
import {
  buildSchema,
  execute,
  type ExecutionResult,
  GraphQLError,
  type GraphQLObjectType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  parse,
} from 'graphql';

import { DomainError } from '../../src/errors';
import { jitExecutionPlugin } from '../../src/graphql/jit-execution';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The operations run by graphql-jit (from a document's second use, see src/graphql/jit-execution.ts) answer as
 * graphql-js answers them, byte for byte: each operation is sent three times, its first answer comes from
 * graphql-js and the next two from graphql-jit (seen in the answer's data: graphql-js makes it with a null
 * prototype, graphql-jit as an object literal), and the three must be equal, status and body.
 */

type Engine = 'graphql-js' | 'graphql-jit' | 'no data';

/** Records, per answer, which engine made its data. */
function engineSpy(): { plugin: ApolloServerPlugin<any>; engines: Engine[] } {
  const engines: Engine[] = [];
  return {
    engines,
    plugin: {
      async requestDidStart() {
        return {
          async willSendResponse({ response }) {
            const data = response.body.kind === 'single' ? response.body.singleResult.data : undefined;
            if (data === undefined || data === null) engines.push('no data');
            else engines.push(Object.getPrototypeOf(data) === null ? 'graphql-js' : 'graphql-jit');
          },
        };
      },
    },
  };
}

describe('graphql-jit answers as graphql-js, through the app', () => {
  let app: TestApp;
  let admin: TestUser;
  let manager: TestUser;
  let member: TestUser;
  const spy = engineSpy();

  beforeAll(async () => {
    app = await startTestApp({ plugins: [spy.plugin] });
    admin = await createOrganization(app, 'Jit Org');
    manager = await createUser(app, admin, { role: Role.MANAGER });
    member = await createUser(app, admin, { role: Role.MEMBER });
  });
  afterAll(() => app.close());

  async function send(body: unknown, key: string | undefined): Promise<{ status: number; text: string }> {
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'x-access-key': key } : {}) },
      body: JSON.stringify(body),
    });
    // A masked error carries the request id, which is new on every request.
    return {
      status: response.status,
      text: (await response.text()).replace(/"requestId":"[^"]*"/g, '"requestId":"-"'),
    };
  }

  const PAGE = '{ users(first: 5) { edges { node { id email accessKey } } } }';
  const CASES: Array<{
    name: string;
    who: () => string | undefined;
    body: Record<string, unknown>;
    /** The engine of the second and third answers when not graphql-jit. */
    engine?: Engine;
    /** The answer's data is null or absent: which engine made it cannot be seen (only that the answers agree). */
    noData?: true;
  }> = [
    { name: "an admin's page with keys (each reveal audited)", who: () => admin.key, body: { query: PAGE } },
    {
      name: "a manager's page: FORBIDDEN on each accessKey, the rest answers",
      who: () => manager.key,
      body: { query: PAGE },
    },
    { name: 'a member sees only themself', who: () => member.key, body: { query: PAGE } },
    {
      name: 'a FORBIDDEN non-null root field nulls the data (auditEvents for a manager)',
      who: () => manager.key,
      body: { query: '{ __typename auditEvents(first: 1) { edges { node { id } } } }' },
      noData: true,
    },
    {
      name: 'no key: me (non-null) is UNAUTHENTICATED and nulls the data',
      who: () => undefined,
      body: { query: '{ __typename me { id } }' },
      noData: true,
    },
    { name: '__typename alone', who: () => undefined, body: { query: '{ __typename }' } },
    { name: 'me with __typename', who: () => member.key, body: { query: '{ me { __typename id email role } }' } },
    {
      name: 'aliases and fragments, a custom scalar, nested objects',
      who: () => admin.key,
      body: {
        query: `query Q { a: me { ...F } b: me { x: email y: id } o: organization { id name createdAt }
          u: users(first: 2) { edges { cursor node { ... on User { id createdAt organization { name } } } } pageInfo { hasNextPage endCursor } } }
          fragment F on User { id name role isActive createdAt updatedAt accessKeyInfo { hint createdAt } }`,
      },
    },
    {
      name: 'variables with defaults, @include and @skip',
      who: () => admin.key,
      body: {
        query: `query ($n: Int = 2, $withKey: Boolean = true) {
          users(first: $n) { edges { node { id accessKey @include(if: $withKey) email @skip(if: $withKey) } } } }`,
      },
      // A directive on a selection: graphql-js every time (see fits in src/graphql/jit-execution.ts).
      engine: 'graphql-js',
    },
    {
      name: 'the same with variables given',
      who: () => admin.key,
      body: {
        query: `query ($n: Int = 2, $withKey: Boolean = true) {
          users(first: $n) { edges { node { id accessKey @include(if: $withKey) email @skip(if: $withKey) } } } }`,
        variables: { n: 3, withKey: false },
      },
      engine: 'graphql-js',
    },
    {
      name: 'an enum in an input object variable',
      who: () => admin.key,
      body: {
        query: 'query ($f: UsersFilter) { users(filter: $f, first: 5) { edges { node { id role } } } }',
        variables: { f: { role: 'MANAGER' } },
      },
    },
    {
      name: 'a variable that does not coerce (400 BAD_USER_INPUT, nothing runs)',
      who: () => admin.key,
      body: { query: 'query ($n: Int) { users(first: $n) { edges { node { id } } } }', variables: { n: 'many' } },
      noData: true,
    },
    {
      name: 'a required variable missing',
      who: () => admin.key,
      body: { query: 'query ($id: ID!) { user(id: $id) { id } }' },
      noData: true,
    },
    {
      name: 'a user that is not there (NOT_FOUND or null)',
      who: () => admin.key,
      body: { query: '{ user(id: "00000000-0000-4000-8000-000000000000") { id email } }' },
    },
    {
      name: 'a bad cursor: the resolver refuses, a non-null root field',
      who: () => admin.key,
      body: { query: '{ users(first: 1, after: "not a cursor") { edges { node { id } } } }' },
      noData: true,
    },
    {
      name: 'aliases that name Object.prototype members (constructor, toString, hasOwnProperty, valueOf)',
      who: () => admin.key,
      body: {
        query: `{ constructor: me { id } toString: __typename hasOwnProperty: organization { valueOf: name } }`,
      },
    },
    {
      name: 'an alias __proto__, at the top or deeper: graphql-js every time (in an object literal it sets the prototype)',
      who: () => admin.key,
      body: { query: `{ __proto__: me { id } constructor: me { ...F } } fragment F on User { __proto__: email }` },
      engine: 'graphql-js',
    },
    {
      name: 'string literals that would be code if pasted into code (quotes, backslashes, ${}, line breaks)',
      who: () => admin.key,
      body: {
        query: String.raw`{ a: users(first: 3, filter: { search: "'); throw new Error('x'); ('" }) { edges { node { id } } }
          b: users(first: 3, filter: { search: "\"); process.exit(1); //\\" }) { edges { node { id } } }
          c: users(first: 3, filter: { search: "${'$'}{process.exit(1)}\u2028\n${'`'}" }) { edges { node { id } } } }`,
      },
    },
    {
      name: 'operationName picks one operation of two',
      who: () => admin.key,
      body: { query: 'query A { me { id } } query B { me { email } }', operationName: 'B' },
    },
  ];

  it.each(CASES)('$name', async ({ name, who, body: given, engine = 'graphql-jit', noData }) => {
    // A document of its own (the comment makes it new to Apollo's document store): graphql-js answers it first.
    const body = { ...given, query: `${String(given.query)}\n# ${name}` };
    const from = spy.engines.length;
    const first = await send(body, who());
    const second = await send(body, who());
    const third = await send(body, who());
    expect(second).toEqual(first);
    expect(third).toEqual(first);
    const engines = spy.engines.slice(from);
    if (engines[0] !== 'no data') expect(engines).toEqual(['graphql-js', engine, engine]);
    else expect(engines).toEqual(['no data', 'no data', 'no data']);
    expect(engines[0] === 'no data').toBe(Boolean(noData));
  });

  it('the answers above are what they say (the refusals are there)', async () => {
    const managerPage = JSON.parse((await send({ query: PAGE }, manager.key)).text);
    expect(managerPage.data.users.edges.length).toBeGreaterThan(1);
    expect(managerPage.errors.map((e: { extensions: { code: string } }) => e.extensions.code)).toEqual(
      managerPage.data.users.edges.map(() => 'FORBIDDEN'),
    );
    expect(managerPage.data.users.edges.every((e: { node: { accessKey: unknown } }) => e.node.accessKey === null)).toBe(
      true,
    );
    const coercion = await send(
      { query: 'query ($n: Int) { users(first: $n) { edges { node { id } } } }', variables: { n: 'many' } },
      admin.key,
    );
    expect(coercion.status).toBe(400);
    expect(JSON.parse(coercion.text).errors[0].extensions.code).toBe('BAD_USER_INPUT');
  });

  it('mutations and introspection run in graphql-js', async () => {
    const from = spy.engines.length;
    for (let i = 0; i < 3; i++) await send({ query: 'mutation { logout }' }, member.key);
    for (let i = 0; i < 3; i++) await send({ query: '{ __schema { queryType { name } } }' }, member.key);
    expect(spy.engines.slice(from).filter((engine) => engine === 'graphql-jit')).toEqual([]);
  });
});

/**
 * What the service's schema cannot produce on demand (an error in a list item under non-null, unions), on a
 * small schema: the executor's answer from the second use on equals graphql-js's, errors included (as Apollo
 * reads them: message, locations, path, extensions, originalError).
 */
describe('graphql-jit answers as graphql-js, on a small schema', () => {
  const schema: GraphQLSchema = buildSchema(`
    type Query { items: [Item!]! maybe: [Item!] things: [Thing!]! nested: Box slow: String }
    type Item { id: ID! name: String! secret: String }
    type Cat { id: ID! meow: String }
    type Dog { id: ID! woof: String }
    union Thing = Cat | Dog
    type Box { item: Item! other: String }
  `);
  const item = (id: number) => ({ id, name: id === 2 ? null : `n${id}` });
  const itemType = schema.getType('Item') as GraphQLObjectType;
  itemType.getFields().secret.resolve = ({ id }: { id: number }) => {
    if (id === 3) throw new DomainError('You do not have permission to do this.', 'FORBIDDEN');
    if (id === 4) throw new Error('boom');
    return `s${id}`;
  };
  const root = {
    items: () => [1, 2, 3, 4].map(item),
    maybe: () => [1, 2].map(item),
    things: () => [
      { __typename: 'Cat', id: 1, meow: 'm' },
      { __typename: 'Dog', id: 2, woof: 'w' },
    ],
    nested: () => ({ item: item(2), other: 'o' }),
    slow: async () => 'later',
  };
  for (const field of Object.values(schema.getQueryType()!.getFields())) {
    field.resolve = root[field.name as keyof typeof root] as never;
  }
  /** What our formatError would see of an error: all of it that Apollo's formatting and our hooks read. */
  function seen(error: unknown) {
    const graphqlError = error as GraphQLError;
    return {
      json: graphqlError.toJSON(),
      isGraphqlJs: graphqlError.constructor === GraphQLError,
      original: graphqlError.originalError?.message,
      originalClass: graphqlError.originalError?.constructor.name,
    };
  }
  const encountered: unknown[] = [];
  const plugin = jitExecutionPlugin<any>({
    schema,
    formatError: (_formatted, error) => ({ message: JSON.stringify(seen(error)) }),
    includeStacktraceInErrorResponses: false,
    didEncounterErrors: ({ errors }) => void encountered.push(errors.map(seen)),
  });

  it.each([
    '{ items { id name } }',
    '{ maybe { id name } }',
    '{ items { id secret } }',
    '{ maybe { id secret } slow }',
    '{ things { __typename ... on Cat { id meow } ... on Dog { id woof } } }',
    '{ nested { other item { id name } } }',
    '{ a: items { id } b: maybe { name } slow }',
  ])('%s', async (query) => {
    const document = parse(query);
    const operation = document.definitions[0] as OperationDefinitionNode;
    const expected: ExecutionResult = await execute({ schema, document });
    const expectedAnswer = JSON.stringify({
      data: expected.data,
      errors: expected.errors?.map((error) => ({ message: JSON.stringify(seen(error)) })),
    });
    const listener = await plugin.requestDidStart!({} as never);
    const answers: Array<string | null> = [];
    encountered.length = 0;
    for (let i = 0; i < 3; i++) {
      const context = { request: { variables: {} }, document, operation, contextValue: {} };
      const response = await listener!.responseForOperation!(context as never);
      answers.push(response && response.body.kind === 'single' ? JSON.stringify(response.body.singleResult) : null);
    }
    // The first use is graphql-js's (Apollo executes when the hook answers null); the next two are graphql-jit's.
    expect(answers).toEqual([null, expectedAnswer, expectedAnswer]);
    const expectedErrors = expected.errors?.map(seen);
    expect(encountered).toEqual(expectedErrors ? [expectedErrors, expectedErrors] : []);
  });
});
