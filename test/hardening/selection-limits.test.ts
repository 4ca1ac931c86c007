import { randomBytes } from 'node:crypto';

import { DEFAULT_QUERY_LIMITS } from '../../src/graphql/query-limits';
import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const PRODUCTION = {
  NODE_ENV: 'production',
  ACCESS_KEY_SECRET: randomBytes(32).toString('base64'),
  LOG_LEVEL: 'info',
};

const repeat = (selection: string, times: number): string => Array.from({ length: times }, () => selection).join(' ');

/**
 * graphql-js's validation compares every two selections of one response name at one place (and every two
 * fragments spread at one place), so its work grows with the square of the repeats; the project's limits that run
 * after it (depth, aliases, cost) came too late. Repeats and spreads per place are refused before validation.
 */
describe('repeated selections: refused before validation', () => {
  let app: TestApp;
  let admin: TestUser;
  const errorLines = () => app.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);

  beforeAll(async () => {
    app = await startTestApp({ env: PRODUCTION, captureLogs: true });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('one field 300 times, without credentials (introspection off): 400 TOO_MANY_REPEATED_FIELDS naming it and the limit', async () => {
    const response = await app.gql(`{ ${repeat('__type(name: "A") { name }', 300)} }`);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({
      errors: [
        {
          message:
            'The operation selects "__type" 300 times in one place (repeated, or through fragments); ' +
            `at most ${DEFAULT_QUERY_LIMITS.maxFieldRepeats} selections of one field (name or alias) are allowed ` +
            'in one place. Select it once.',
          extensions: { code: 'TOO_MANY_REPEATED_FIELDS' },
        },
      ],
    });
    expect(errorLines()).toEqual([]);
  });

  it('a field repeated 1,000 times under `me`: the limit, not "Validation aborted."', async () => {
    const response = await app.gql(`{ me { ${repeat('id', 1000)} } }`, { key: admin.key });
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([
      expect.objectContaining({
        message: expect.stringMatching(/^The operation selects "me\.id" 1000 times in one place/),
        extensions: { code: 'TOO_MANY_REPEATED_FIELDS' },
      }),
    ]);
  });

  it('counts repeats that only meet once the parents merge: `me { organization { id } }` 20 times', async () => {
    // No selection set holds `id` twice; merged, as the answer's `me.organization.id` is, it is selected 20 times.
    const response = await app.gql(`{ ${repeat('me { organization { id } }', 20)} }`, { key: admin.key });
    expect(response.status).toBe(400);
    expect(response.body.errors![0].message).toMatch(/^The operation selects "me" 20 times/);
    const nested = await app.gql(`{ ${repeat(`me { ${repeat('organization { id }', 5)} }`, 5)} }`, { key: admin.key });
    expect(nested.status).toBe(400);
    expect(nested.body.errors![0].message).toMatch(/^The operation selects "me\.organization" 25 times/);
  });

  it('names a deep place by the end of its path only', async () => {
    const name = `f${'x'.repeat(60)}`;
    const query = `{ ${`${name} { `.repeat(15)}${repeat('organization { id }', 11)}${' }'.repeat(15)} }`;
    const response = await app.gql(query);
    expect(response.status).toBe(400);
    const { message } = response.body.errors![0];
    expect(message).toMatch(/^The operation selects "\.\.\.[fx.]*\.fx{60}\.organization" 11 times/);
    expect(message.length).toBeLessThan(500);
  });

  it('a ladder (each level repeated up to the limit, 160 levels deep) is refused as too deep before validation', async () => {
    // Validation's overlap check grows with the repeats squared times the depth: 10 side-by-side ladders of an
    // unknown field held validation for about 0.5 s although no place repeated a field more than 10 times.
    const ladder = `${'x { '.repeat(160)}id${' }'.repeat(160)}`;
    const response = await app.gql(`{ ${repeat(ladder, DEFAULT_QUERY_LIMITS.maxFieldRepeats)} }`);
    expect(response.status).toBe(400);
    // Only the refusal: validation (which would report the unknown field `x`) did not run.
    expect(response.body.errors).toEqual([
      {
        message: expect.stringMatching(/^The operation is more than 20 levels deep/),
        extensions: { code: 'QUERY_TOO_DEEP' },
      },
    ]);
    expect(errorLines()).toEqual([]);
  });

  it("Apollo Client's `__typename` and Relay's `id` in every fragment: a leaf may come once from each fragment spread", async () => {
    const spreads = Array.from({ length: DEFAULT_QUERY_LIMITS.maxFragmentSpreads }, (_, i) => `...F${i}`);
    const defs = spreads.map((_, i) => `fragment F${i} on User { __typename id }`).join(' ');
    const response = await app.gql(`{ me { __typename id ${spreads.join(' ')} } } ${defs}`, { key: admin.key });
    expect(response.status).toBe(200);
    expect(response.body.data!.me).toEqual({ __typename: 'User', id: admin.id });
    // Past that, a leaf is refused too, naming its own limit.
    const leafLimit = DEFAULT_QUERY_LIMITS.maxFieldRepeats + DEFAULT_QUERY_LIMITS.maxFragmentSpreads;
    const refused = await app.gql(`{ me { ${repeat('id', leafLimit + 1)} } }`, { key: admin.key });
    expect(refused.status).toBe(400);
    expect(refused.body.errors![0].message).toMatch(
      new RegExp(
        `^The operation selects "me\\.id" ${leafLimit + 1} times .* at most ${leafLimit} selections of a field without a selection set`,
      ),
    );
  });

  it('counts through fragments: fragments spread side by side, and a field repeated inside one', async () => {
    const defs = Array.from({ length: 40 }, (_, i) => `fragment F${i} on User { organization { id } }`).join(' ');
    const spreads = Array.from({ length: 40 }, (_, i) => `...F${i}`).join(' ');
    const sideBySide = await app.gql(`{ me { ${spreads} } } ${defs}`, { key: admin.key });
    expect(sideBySide.status).toBe(400);
    expect(sideBySide.body.errors![0].extensions).toEqual({ code: 'TOO_MANY_FRAGMENT_SPREADS' });
    expect(sideBySide.body.errors![0].message).toBe(
      `The operation spreads more than ${DEFAULT_QUERY_LIMITS.maxFragmentSpreads} fragments into "me" ` +
        '(directly or through other fragments); ' +
        `at most ${DEFAULT_QUERY_LIMITS.maxFragmentSpreads} may be spread into one place.`,
    );
    const inside = await app.gql(`{ me { ...F } } fragment F on User { ${repeat('id', 500)} }`, { key: admin.key });
    expect(inside.status).toBe(400);
    expect(inside.body.errors![0].message).toMatch(/^The operation selects "me\.id" 500 times/);
    // Repeats across fragments spread at one place add up.
    const across = await app.gql(
      `{ me { ...A ...B ...C } } ${['A', 'B', 'C'].map((name) => `fragment ${name} on User { ${repeat('organization { id }', 4)} }`).join(' ')}`,
      { key: admin.key },
    );
    expect(across.status).toBe(400);
    expect(across.body.errors![0].message).toMatch(/^The operation selects "me\.organization" 12 times/);
    // A fragment nobody spreads is validated all the same, so it is checked too.
    const unused = await app.gql(`{ __typename } fragment F on User { ${repeat('id', 500)} }`);
    expect(unused.status).toBe(400);
    expect(unused.body.errors![0].extensions).toEqual({ code: 'TOO_MANY_REPEATED_FIELDS' });
    expect(errorLines()).toEqual([]);
  });

  it("refuses before validation runs: the document's validation errors are not reported with the refusal", async () => {
    // Unknown fields and an undefined variable: validation would report each of them.
    const query = `query { nope ${repeat('__type(name: $undefined) { name nope }', 50)} }`;
    const response = await app.gql(query);
    expect(response.status).toBe(400);
    expect(response.body.errors).toHaveLength(1);
    expect(response.body.errors![0].extensions).toEqual({ code: 'TOO_MANY_REPEATED_FIELDS' });
    // Below the limit, the same document is validated, and its errors reported.
    const validated = await app.gql(`query { nope ${repeat('__type(name: $undefined) { name nope }', 2)} }`);
    expect(validated.status).toBe(400);
    expect(validated.body.errors!.map((error) => error.extensions!.code)).toEqual(
      expect.arrayContaining(['GRAPHQL_VALIDATION_FAILED']),
    );
    expect(validated.body.errors!.length).toBeGreaterThan(1);
  });

  it('a spread of the same fragment repeated at one place counts once (it is merged once)', async () => {
    const response = await app.gql(`{ me { ${repeat('...F', 200)} } } fragment F on User { id name }`, {
      key: admin.key,
    });
    expect(response.status).toBe(200);
    expect(response.body.data!.me).toEqual({ id: admin.id, name: expect.any(String) });
  });

  it("fragments that spread each other (a cycle) get validation's answer, not a hang", async () => {
    const response = await app.gql(
      '{ me { ...A } } fragment A on User { organization { ...B } } fragment B on Organization { ...A }',
      { key: admin.key },
    );
    expect(response.status).toBe(400);
    expect(response.body.errors![0].extensions!.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('inline fragments nested 1,600 deep (no field between them) are refused as too deep before validation', async () => {
    // Within the token limit; validation walked them for ~40 ms, every time: Apollo could not keep the document
    // (its size check overflowed the stack), and execution recursed 1,600 deep.
    const nested = (inner: string) => `${'... { '.repeat(1600)}${inner}${' }'.repeat(1600)}`;
    for (const query of [
      `{ ${nested('__typename')} }`,
      `{ me { ${nested('id')} } }`,
      `{ __typename } fragment F on Query { ${nested('__typename')} }`,
      `{ ...F } fragment F on Query { ${nested('__typename')} }`,
    ]) {
      const response = await app.gql(query);
      expect(response.status).toBe(400);
      expect(response.body.errors![0].message).toMatch(
        query.startsWith('{ me') ? /\(at "me"\)/ : /\(at the operation's root\)/,
      );
      expect(response.body.errors).toEqual([
        {
          message: expect.stringMatching(
            /^The operation is more than 20 levels deep, counting fields and inline fragments/,
          ),
          extensions: { code: 'QUERY_TOO_DEEP' },
        },
      ]);
    }
    expect(errorLines()).toEqual([]);
  });

  it("an argument value nested past what the parser can read: 400 QUERY_TOO_DEEP in words, not the engine's", async () => {
    for (const value of [`${'['.repeat(2400)}1${']'.repeat(2400)}`, `${'{a: '.repeat(1600)}1${' }'.repeat(1600)}`]) {
      const response = await app.gql(`{ __type(name: ${value}) { name } }`);
      expect(response.status).toBe(400);
      expect(response.body.errors).toEqual([
        {
          message: expect.stringMatching(/^The operation nests too deeply to be read/),
          extensions: { code: 'QUERY_TOO_DEEP' },
        },
      ]);
    }
    expect(errorLines()).toEqual([]);
  });

  it('a document whose fragments would write out past the cost limit is refused before validation', async () => {
    // Each level spreads the next under three fields: 3^12 places (within the depth limits), so no place-by-place
    // walk could finish.
    const levels = 12;
    const fragments = Array.from(
      { length: levels },
      (_, i) =>
        `fragment F${i} on Organization { a: users { ...F${i + 1} } b: users { ...F${i + 1} } c: users { ...F${i + 1} } }`,
    );
    // `users` on an Organization does not exist; the refusal comes first all the same.
    const query = `{ me { organization { ...F0 } } } ${fragments.join(' ')} fragment F${levels} on Organization { id }`;
    const response = await app.gql(query, { key: admin.key });
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ extensions: { code: 'QUERY_TOO_COMPLEX' } })]);
    expect(response.body.errors![0].message).toMatch(/more than 20000 selections/);
  });

  it('the walk counts the whole document, every operation: two that each fit, sent together, are refused naming the document', async () => {
    const strict = await startTestApp({ env: { MAX_QUERY_COST: '40' } });
    try {
      // 26 selections each (the spread and its 25 fields): one operation is within 40, the document's two are not.
      const fragment = `fragment F on Query { ${Array.from({ length: 25 }, (_, i) => `a${i}: __typename`).join(' ')} }`;
      const alone = await strict.gql(`query A { ...F } ${fragment}`);
      expect(alone.status).toBe(200);
      const both = await fetch(strict.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: `query A { ...F } query B { ...F } ${fragment}`, operationName: 'A' }),
      });
      expect(both.status).toBe(400);
      expect(await both.json()).toEqual({
        errors: [
          {
            message:
              'The document is too large: its operations (all of them, not only the one run), written out with ' +
              'their fragments, make more than 40 selections; at most 40 are allowed.',
            extensions: { code: 'QUERY_TOO_COMPLEX' },
          },
        ],
      });
    } finally {
      await strict.close();
    }
  });
});

describe('repeated selections: what legitimate clients send still passes', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    app = await startTestApp();
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());

  it('a field selected both directly and through fragments, up to the limit', async () => {
    const fragments = Array.from({ length: DEFAULT_QUERY_LIMITS.maxFieldRepeats - 1 }, (_, i) => `...F${i}`);
    const defs = fragments.map((_, i) => `fragment F${i} on User { id organization { id } }`).join(' ');
    const response = await app.gql(`{ me { id ${fragments.join(' ')} } } ${defs}`, { key: admin.key });
    expect(response.status).toBe(200);
    expect(response.body.data!.me.id).toBe(admin.id);
  });

  it('inline fragments, with and without type conditions and directives, nested a few levels', async () => {
    const response = await app.gql(
      'query($on: Boolean = true) { me { ... on User { ... @include(if: $on) { ... { id organization { ... on Organization { id } } } } } } }',
      { key: admin.key },
    );
    expect(response.status).toBe(200);
    expect(response.body.data!.me.id).toBe(admin.id);
  });

  it('the limits are configurable', async () => {
    const strict = await startTestApp({ env: { MAX_QUERY_FIELD_REPEATS: '1', MAX_QUERY_FRAGMENT_SPREADS: '1' } });
    try {
      const twice = await strict.gql('{ a: __type(name: "A") { name } a: __type(name: "A") { name } }');
      expect(twice.status).toBe(400);
      expect(twice.body.errors![0].message).toMatch(/at most 1 selections of one field/);
      const spreads = await strict.gql(
        '{ ...A ...B } fragment A on Query { a: __typename } fragment B on Query { b: __typename }',
      );
      expect(spreads.status).toBe(400);
      expect(spreads.body.errors![0].extensions).toEqual({ code: 'TOO_MANY_FRAGMENT_SPREADS' });
      expect((await strict.gql('{ __typename }')).status).toBe(200);
    } finally {
      await strict.close();
    }
  });
});
