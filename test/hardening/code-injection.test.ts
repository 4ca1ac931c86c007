import { createOrganization, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Argument values are data, never code. Query compilers that generate JavaScript from documents can get
 * this wrong: graphql-jit 0.8.9 splices argument literals into its generated code and rewrites a marker
 * string inside them into `new Date(...)`, so the payloads below ran as code in the service (found while
 * measuring it as an executor for issue #4; see docs/performance.md). This service runs queries in graphql-jit
 * from a document's second use, and graphql-js for every document with the marker in a string literal
 * (src/graphql/jit-execution.ts): these requests must stay harmless whatever executor it uses.
 */
const MARKER = '__MAGIC_DATE__33a9e76d_02e0_4128_8e92_3530ad3da74d';
const EFFECT = 'globalThis.__crmAccessInjected=1';
const PAYLOADS = [
  `${MARKER}1),x:${EFFECT},y:(1`,
  `${MARKER}1)+(${EFFECT})+(1`,
  // After a quote, which JSON escapes: the rewrite matches from the escaped quote on.
  `a"${MARKER}1),x:${EFFECT},y:(1`,
  `a"__MAGIC_NAN__57f286b9_4c20_487f_b409_79804ddcb4f8"+(${EFFECT})+"`,
  `"+(${EFFECT})+"`,
  `\`+(${EFFECT})+\``,
  `\${${EFFECT}}`,
  `');${EFFECT};//`,
];

describe('argument values are never executed', () => {
  let app: TestApp;
  let admin: TestUser;
  beforeAll(async () => {
    // Each payload makes failed sign-ins; they must reach the resolver, not the failed-authentication limit.
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '1000' } });
    admin = await createOrganization(app);
  });
  afterAll(() => app.close());
  afterEach(() => {
    delete (globalThis as Record<string, unknown>).__crmAccessInjected;
  });

  it.each(PAYLOADS)('as literals and as variables, anonymous or admin: %s', async (payload) => {
    const literal = JSON.stringify(payload);
    const requests = [
      { query: `{ user(id: ${literal}) { id } }` },
      { query: `{ users(filter: { search: ${literal} }, first: 1) { edges { node { id } } } }`, key: admin.key },
      { query: `{ user(id: ${literal}) { id } }`, key: admin.key },
      { query: `mutation { login(email: ${literal}, password: ${literal}) { token } }` },
      { query: 'query ($id: ID!) { user(id: $id) { id } }', variables: { id: payload }, key: admin.key },
    ];
    // Sent three times each: an executor that compiles a document after it has been seen would compile it.
    for (let round = 0; round < 3; round++) {
      for (const { query, key, variables } of requests) {
        const response = await app.gql(query, { key, variables });
        // Executed and answered with a GraphQL error or data, never refused earlier and never a 5xx.
        expect(response.status).toBe(200);
        expect((globalThis as Record<string, unknown>).__crmAccessInjected).toBeUndefined();
      }
    }
  });
});
