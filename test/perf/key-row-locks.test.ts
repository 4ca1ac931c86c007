import { Client, type QueryConfig } from 'pg';

import { INSERT_IF_CONFIRMED, type PauseHooks } from '../../src/authorization/authority';
import { createOrganization, createUser, type TestUser } from '../factories/organizations';
import { waitForLockWaiters } from '../helpers/locks';
import { startTestApp, type TestApp } from '../helpers/test-app';
import { until } from '../helpers/until';

const PAGE = '{ users(first: 20) { edges { node { id accessKey } } } }';
const REVEAL = 'query ($id: ID!) { user(id: $id) { accessKey } }';

/**
 * A batch of key views locks the key rows it needs (the actors' and the revealed keys') by user id, and sends
 * each user id once. With repeats (the admin's own key row is both the actor's and a row of the page; under load
 * a batch held one admin's id per request) the generic plan's scan of access_keys compared every row with
 * every element: about 1 ms of the database's time for a batch of 31 reveals of one key on 1,000 users
 * (docs/performance.md, 2026-12-02). The statements are watched at pg's Client, as the service sends them.
 */
describe('a batch of key views sends each key row it locks once', () => {
  const hooks: PauseHooks = {};
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;
  const sent: Array<{ text: string; values: unknown[] }> = [];
  let watch: jest.SpyInstance;

  beforeAll(async () => {
    app = await startTestApp({ hooks });
    admin = await createOrganization(app, 'Lock Rows Org');
    member = await createUser(app, admin);
    for (let i = 0; i < 3; i++) await createUser(app, admin);
    const query = Client.prototype.query as (...args: unknown[]) => unknown;
    watch = jest.spyOn(Client.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const config = args[0] as QueryConfig | string;
      if (typeof config === 'object' && /access_keys/.test(config.text) && /FOR SHARE/.test(config.text))
        sent.push({ text: config.text, values: config.values ?? [] });
      return query.apply(this, args);
    } as never);
  });
  afterAll(async () => {
    watch.mockRestore();
    await app.close();
  });
  afterEach(() => {
    delete hooks.beforeAuthorityCheck;
    sent.length = 0;
  });

  /** The uuid arrays sent to the statements that lock key rows FOR SHARE. */
  function idArraysSent(): string[][] {
    const uuid = /^\{?[0-9a-f]{8}-/i;
    return sent.flatMap(({ values }) =>
      values.flatMap((value) => {
        const ids = Array.isArray(value)
          ? value
          : typeof value === 'string' && uuid.test(value)
            ? value.slice(1, -1).split(',')
            : [];
        return ids.length > 0 && ids.every((id) => typeof id === 'string' && /^[0-9a-f-]{36}$/i.test(id))
          ? [ids as string[]]
          : [];
      }),
    );
  }

  async function revealPage(): Promise<void> {
    const response = await app.gql(PAGE, { key: admin.key });
    expect(response.body.errors).toBeUndefined();
    const edges = response.body.data!.users.edges as Array<{ node: { id: string; accessKey: string } }>;
    expect(edges.map(({ node }) => node.id)).toContain(admin.id);
    for (const { node } of edges) expect(node.accessKey).toMatch(/^cak_/);
  }

  it('in one statement (the views confirmed at once): $3 holds the actor and every target, each once', async () => {
    await revealPage();
    const statements = sent.filter(({ text }) => text === INSERT_IF_CONFIRMED);
    expect(statements).toHaveLength(1);
    const literal = statements[0].values[2] as string;
    const locked = literal.slice(1, -1).split(',');
    expect(new Set(locked).size).toBe(locked.length);
    const page = (statements[0].values[13] as string).slice(1, -1).split(',');
    expect(page).toContain(admin.id);
    expect(new Set(locked)).toEqual(new Set([admin.id, ...page]));
  });

  it('in the transaction that confirms each actor', async () => {
    // While a test sets this hook, every batch goes through confirmEach (Authority.insertIfConfirmed).
    hooks.beforeAuthorityCheck = async () => {};
    await revealPage();
    const arrays = idArraysSent();
    expect(arrays.length).toBeGreaterThan(0);
    for (const ids of arrays) expect(new Set(ids).size).toBe(ids.length);
    expect(arrays.some((ids) => ids.includes(admin.id) && ids.length > 1)).toBe(true);
  });

  it('once per credential: a batch of several requests by one key confirms that key once', async () => {
    await app.gql('{ me { id } }', { key: admin.key });
    const holder = new Client({ connectionString: app.databaseUrl });
    await holder.connect();
    const reveal = () => app.gql(REVEAL, { key: admin.key, variables: { id: member.id } });
    let answers: Awaited<ReturnType<typeof reveal>>[];
    try {
      // The first batch waits for the member's key row; the next requests queue behind it and form one batch.
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM access_keys WHERE user_id = $1 FOR UPDATE', [member.id]);
      const first = reveal();
      await waitForLockWaiters(app, 1);
      const more = Array.from({ length: 5 }, reveal);
      await until(() => app.services.audit.keyViews.waiting === 5);
      await holder.query('ROLLBACK');
      answers = await Promise.all([first, ...more]);
    } finally {
      await holder.end();
    }
    for (const answer of answers) expect(answer.body.data!.user.accessKey).toBe(member.key);
    const batches = sent.filter(({ text }) => text === INSERT_IF_CONFIRMED).map(({ values }) => values);
    expect(batches).toHaveLength(2);
    const [, batch] = batches;
    // $5: the principals confirmed; $13: each view's request (`who`); $17: each request's principal.
    expect(batch[4]).toEqual([0]);
    expect((batch[12] as string).slice(1, -1).split(',')).toHaveLength(5);
    expect(batch[16]).toEqual([0, 0, 0, 0, 0]);
    expect(new Set((batch[2] as string).slice(1, -1).split(','))).toEqual(new Set([admin.id, member.id]));
  });
});
