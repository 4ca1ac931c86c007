import { FILTERED_AUDIT_READ_COST } from '../../src/audit/audit.service';
import { DEFAULT_QUERY_LIMITS } from '../../src/graphql/query-limits';
import { createOrganization, type TestUser } from '../factories/organizations';
import { executionSpy } from '../helpers/execution-spy';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** `count` aliased audit reads of one event each, with `filter` (GraphQL text) when given. */
function aliasedReads(count: number, filter?: string): string {
  const args = filter ? `first: 1, filter: ${filter}` : 'first: 1';
  return Array.from({ length: count }, (_, i) => `a${i}: auditEvents(${args}) { edges { node { id action } } }`).join(
    ' ',
  );
}

describe('the cost of a filtered audit read', () => {
  let app: TestApp;
  let admin: TestUser;
  const spy = executionSpy();

  beforeAll(async () => {
    app = await startTestApp({ plugins: [spy.plugin] });
    admin = await createOrganization(app);
    // The key is looked up once here, so the counts below see only what the requests themselves cause.
    await app.gql('{ __typename }', { key: admin.key });
  });
  afterAll(() => app.close());

  /** Sends the query and returns it with the statements it ran (the key's last-use and rate-limit writes aside). */
  async function send(query: string, variables?: Record<string, unknown>) {
    const statementsBefore = app.queries.count;
    const executionsBefore = spy.executions;
    const response = await app.gql(query, { key: admin.key, variables });
    const statements = app.queries.since(statementsBefore).filter((sql) => !/last_used_at|auth_failures/.test(sql));
    return { response, statements, executed: spy.executions - executionsBefore };
  }

  it('refuses a request of many aliased filtered audit reads before it runs: 400, no execution, no SQL', async () => {
    expect(FILTERED_AUDIT_READ_COST * 30).toBeGreaterThan(DEFAULT_QUERY_LIMITS.maxCost);
    const { response, statements, executed } = await send(`{ ${aliasedReads(30, '{ action: LOGIN_FAILED }')} }`);
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ extensions: { code: 'QUERY_TOO_COMPLEX' } })]);
    expect(response.body.errors![0].message).toMatch(/would cost \d+/);
    expect(executed).toBe(0);
    expect(statements).toEqual([]);
  });

  it('counts a filter given in a variable the same way', async () => {
    const query = `query ($f: AuditEventsFilter) { ${aliasedReads(30, '$f')} }`;
    const { response, statements, executed } = await send(query, { f: { actorId: admin.id } });
    expect(response.status).toBe(400);
    expect(response.body.errors![0].extensions).toEqual({ code: 'QUERY_TOO_COMPLEX' });
    expect(executed).toBe(0);
    expect(statements).toEqual([]);
  });

  it('lets the same reads through without a filter, with an empty one, and a few filtered ones', async () => {
    for (const query of [
      `{ ${aliasedReads(30)} }`,
      `{ ${aliasedReads(30, '{}')} }`,
      `query ($f: AuditEventsFilter) { ${aliasedReads(30, '$f')} }`,
      `{ ${aliasedReads(5, `{ targetUserId: "${admin.id}" }`)} }`,
    ]) {
      const { response, executed } = await send(query, { f: null });
      expect(response.body.errors).toBeUndefined();
      expect(response.status).toBe(200);
      expect(executed).toBe(1);
    }
  });
});
