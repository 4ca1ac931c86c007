import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

const QUERY = `query ($filter: AuditEventsFilter, $first: Int, $after: String) {
  auditEvents(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id action target { id } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

interface Edge {
  cursor: string;
  node: { id: string; action: string; target: { id: string } | null };
}

/** The bigint ids of the service-wide sequence, as a client must never see them. */
async function rawIds(app: TestApp, organizationId: string): Promise<string[]> {
  const rows: { id: string }[] = await app.dataSource.query(
    `SELECT id::text AS id FROM audit_events WHERE organization_id = $1 ORDER BY id DESC`,
    [organizationId],
  );
  return rows.map((row) => row.id);
}

describe('audit event ids and cursors are opaque', () => {
  let app: TestApp;
  let a: TestUser;
  let b: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    a = await createOrganization(app, 'Opaque A');
    b = await createOrganization(app, 'Opaque B');
  });
  afterAll(() => app.close());

  async function page(user: TestUser, variables: Record<string, unknown>) {
    return app.gql(QUERY, { key: user.key, variables });
  }

  it("between two of A's events, events written by B leave nothing countable in A's ids or cursors", async () => {
    const first = await createUser(app, a);
    for (let i = 0; i < 5; i++) await createUser(app, b);
    const second = await createUser(app, a);

    const response = await page(a, { filter: { action: 'USER_CREATED' }, first: 10 });
    expect(response.body.errors).toBeUndefined();
    const edges: Edge[] = response.body.data!.auditEvents.edges;
    const [newer, older] = edges;
    expect(newer.node.target!.id).toBe(second.id);
    expect(older.node.target!.id).toBe(first.id);

    const raw = await rawIds(app, a.organizationId);
    for (const edge of edges) {
      for (const value of [edge.node.id, edge.cursor]) {
        expect(value).not.toMatch(/^[0-9]+$/);
        expect(Number.isFinite(Number(value))).toBe(false);
        // The row's 8 big-endian bytes do not appear in the token decoded as base64url (what it looks like).
        const decoded = Buffer.from(value, 'base64url');
        for (const id of raw) {
          const bytes = Buffer.alloc(8);
          bytes.writeBigUInt64BE(BigInt(id));
          expect(decoded.includes(bytes)).toBe(false);
        }
      }
    }
  });

  it("A's cursors page through all of A's events, one at a time, in order, without repeats", async () => {
    const all = await page(a, { first: 500 });
    const expected: string[] = all.body.data!.auditEvents.edges.map((e: Edge) => e.node.id);
    expect(expected.length).toBe((await rawIds(app, a.organizationId)).length);
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const response = await page(a, { first: 2, after });
      expect(response.body.errors).toBeUndefined();
      const connection = response.body.data!.auditEvents;
      seen.push(...connection.edges.map((e: Edge) => e.node.id));
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    expect(seen).toEqual(expected);
  });

  it('the same event has the same id on every read', async () => {
    const one = await page(a, { first: 3 });
    const two = await page(a, { first: 3 });
    expect(two.body.data!.auditEvents).toEqual(one.body.data!.auditEvents);
  });

  describe('when the cursor is not one this organization was given', () => {
    async function expectRefused(user: TestUser, after: string) {
      const response = await page(user, { first: 5, after });
      expect(response.status).toBe(200);
      expect(response.body.errors).toHaveLength(1);
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
      expect(response.body.errors![0].message).toBe('"after" must be an endCursor returned by this API.');
      expect(response.body.data ?? null).toBeNull();
    }

    it('a decimal id (the old format), garbage, empty-ish and huge values are BAD_USER_INPUT', async () => {
      const [newest] = await rawIds(app, a.organizationId);
      // '' included: an empty cursor is none this API gave, not "no cursor" (null, or no argument, is).
      for (const forged of [newest, '1', '9223372036854775807', 'abc', '~~~~', 'A'.repeat(2000), '-1', '']) {
        await expectRefused(a, forged);
      }
    });

    it('a tampered cursor (any one character changed) is BAD_USER_INPUT', async () => {
      const response = await page(a, { first: 1 });
      const cursor: string = response.body.data!.auditEvents.pageInfo.endCursor;
      for (let i = 0; i < cursor.length; i++) {
        const swapped = cursor[i] === 'A' ? 'B' : 'A';
        await expectRefused(a, cursor.slice(0, i) + swapped + cursor.slice(i + 1));
      }
      await expectRefused(a, cursor.slice(0, -1));
      await expectRefused(a, cursor + 'A');
    });

    it("another organization's cursor is BAD_USER_INPUT and reads none of its rows", async () => {
      const response = await page(b, { first: 1 });
      const cursorOfB: string = response.body.data!.auditEvents.pageInfo.endCursor;
      expect(typeof cursorOfB).toBe('string');
      await expectRefused(a, cursorOfB);
    });
  });
});
