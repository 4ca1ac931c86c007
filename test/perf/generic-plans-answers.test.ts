import { randomBytes, randomUUID } from 'node:crypto';

import { createOrganization, createUser, login, type TestUser } from '../factories/organizations';
import { createTestDatabase, type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';

/**
 * The reads of one row by id or digest are written `= $1` for one value and `= ANY($1)` for several
 * (src/db/scope.ts, oneOrAny): whichever form a read takes, every answer must be the one the other form gives.
 * Each id or credential is asked alone (the one-value form), then with others in one statement (the ANY form),
 * and, for credentials, on an instance whose keyring holds two secrets (two digests, the ANY form). No answer
 * may be a 5xx and no error-level line may be logged.
 */
describe('one-value and ANY reads by id or digest give the same answers', () => {
  const oldSecret = randomBytes(32);
  const secret = randomBytes(32);
  let database: { url: string; drop(): Promise<void> };
  let app: TestApp;
  let admin: TestUser;
  let member: TestUser;
  let deactivated: TestUser;
  let otherAdmin: TestUser;
  let otherMember: TestUser;
  let members: TestUser[];

  // Warnings and errors logged (no error may be); the unknown and malformed credentials below are failed
  // sign-ins from one address, whose limit is not what is tested here.
  const ENV = { LOG_LEVEL: 'warn', AUTH_FAILURE_LIMIT: '100000' };
  const PROFILE = 'id email organization { id name } accessKeyInfo { createdAt }';

  beforeAll(async () => {
    database = await createTestDatabase();
    app = await startTestApp({
      database: { url: database.url, secret },
      env: ENV,
      captureLogs: true,
    });
    admin = await createOrganization(app, 'Answers Inc', 'admin password 123');
    member = await createUser(app, admin, { password: 'member password 123' });
    deactivated = await createUser(app, admin, { password: 'deactivated password 1' });
    otherAdmin = await createOrganization(app, 'Other Inc');
    otherMember = await createUser(app, otherAdmin);
    members = [];
    for (let i = 0; i < 96; i++) members.push(await createUser(app, admin));
    const off = await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', {
      key: admin.key,
      variables: { id: deactivated.id },
    });
    expect(off.body.errors).toBeUndefined();
  }, 120_000);
  afterAll(async () => {
    await app.close();
    await database.drop();
  });
  afterEach(() => {
    // pino's numeric levels: 50 is error, 60 fatal.
    const errors = app.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
    expect(errors).toEqual([]);
  });

  /** What a client sees of one `user(id:)` field: its data or its error's code, message and path. */
  function answerOf(response: GraphQLResponse, alias: string): unknown {
    expect(response.status).toBeLessThan(500);
    // A request refused before execution (a too-long argument: 400) answers for no field in particular.
    if (response.status !== 200)
      return { status: response.status, codes: response.body.errors?.map((e) => e.extensions?.code) };
    const error = response.body.errors?.find((e) => e.path?.[0] === alias);
    if (error) return { code: error.extensions?.code, message: error.message };
    return response.body.data?.[alias];
  }

  async function alone(id: string, key = admin.key): Promise<unknown> {
    const response = await app.gql(`query ($id: ID!) { u: user(id: $id) { ${PROFILE} } }`, { key, variables: { id } });
    return answerOf(response, 'u');
  }

  async function together(ids: string[], key = admin.key): Promise<unknown[]> {
    const fields = ids.map((_, i) => `u${i}: user(id: $id${i}) { ${PROFILE} }`).join(' ');
    const params = ids.map((_, i) => `$id${i}: ID!`).join(', ');
    const response = await app.gql(`query (${params}) { ${fields} }`, {
      key,
      variables: Object.fromEntries(ids.map((id, i) => [`id${i}`, id])),
    });
    return ids.map((_, i) => answerOf(response, `u${i}`));
  }

  const malformed = [
    '',
    'not-a-uuid',
    'x'.repeat(10_000),
    // A Cyrillic а first, a fullwidth 4 as the version digit: ids that look like a uuid.
    () => `\u0430${member.id.slice(1)}`,
    () => `${member.id.slice(0, 14)}\uff14${member.id.slice(15)}`, // the version digit of a v4 uuid
    "' OR 1=1 --",
    () => `${member.id}' OR '1'='1`,
    () => `{${member.id},${otherMember.id}}`,
    () => `{${member.id}}`,
    () => member.id.replace(/-/g, ''),
    () => `${member.id}\u0000`,
  ];

  it('a user by id, alone and with others in one statement: the same answer for each id', async () => {
    const ids = [
      member.id,
      member.id.toUpperCase(),
      deactivated.id,
      otherMember.id,
      otherAdmin.id,
      randomUUID(),
      admin.id,
      ...malformed.map((id) => (typeof id === 'string' ? id : id())),
    ];
    const start = app.queries.count;
    const single = [];
    for (const id of ids) single.push(await alone(id));
    expect(single[0]).toMatchObject({ id: member.id, organization: { id: admin.organizationId } });
    expect(single[1]).toEqual(single[0]);
    expect(single[2]).toMatchObject({ id: deactivated.id });
    expect(single[3]).toMatchObject({ code: 'NOT_FOUND' });
    expect(single[5]).toMatchObject({ code: 'NOT_FOUND' });
    for (const answer of single.slice(7)) expect(JSON.stringify(answer)).toMatch(/BAD_USER_INPUT|"status":400/);

    // Two ids, then all of them (repeated ones too) in one request.
    expect(await together([member.id, deactivated.id])).toEqual([single[0], single[2]]);
    expect(await together([member.id, member.id, member.id.toUpperCase()])).toEqual([single[0], single[0], single[0]]);
    // An id refused with its whole request (400: the 10,000-character one, the one with a NUL) answers for
    // no field, so it is asked alone only.
    const refused = single.map((answer) => (answer as { status?: number }).status === 400);
    expect(refused.filter(Boolean).length).toBeLessThan(4);
    expect(await together(ids.filter((_, i) => !refused[i]))).toEqual(single.filter((_, i) => !refused[i]));
    // Both forms of the profile read ran.
    const profileReads = app.queries.since(start).filter((text) => /FROM users u LEFT JOIN access_keys k/.test(text));
    expect(profileReads.some((text) => text.endsWith('WHERE u.id = $1'))).toBe(true);
    expect(profileReads.some((text) => text.endsWith('WHERE u.id = ANY($1)'))).toBe(true);
    // Another organization's admin sees none of the first organization's users.
    expect(await alone(member.id, otherAdmin.key)).toMatchObject({ code: 'NOT_FOUND' });
    expect(await together([member.id, otherMember.id], otherAdmin.key)).toEqual([
      { code: 'NOT_FOUND', message: (single[3] as { message: string }).message },
      await alone(otherMember.id, otherAdmin.key),
    ]);
  });

  it('a hundred ids read by concurrent requests give what each gives alone', async () => {
    const ids = [...members.map((m) => m.id), member.id, deactivated.id, otherMember.id, randomUUID()];
    const single = [];
    for (const id of ids) single.push(await alone(id));
    const batches = [];
    for (let start = 0; start < ids.length; start += 25) batches.push(together(ids.slice(start, start + 25)));
    expect((await Promise.all(batches)).flat()).toEqual(single);
  });

  it("the audit events' actors and targets (the request's user loader): one event at a time or a page", async () => {
    // A sign-in's event is about its actor: one user to read.
    await login(app, { email: admin.email, password: 'admin password 123' });
    const page = await app.gql(
      '{ auditEvents(first: 50) { edges { node { id actor { id email } target { id email } } } } }',
      { key: admin.key },
    );
    expect(page.status).toBe(200);
    expect(page.body.errors).toBeUndefined();
    const nodes = (page.body.data!.auditEvents.edges as Array<{ node: { id: string } }>).map((edge) => edge.node);
    expect(nodes.length).toBeGreaterThan(1);
    const start = app.queries.count;
    let after: string | null = null;
    for (const node of nodes) {
      const one: GraphQLResponse = await app.gql(
        'query ($after: String) { auditEvents(first: 1, after: $after) { edges { node { id actor { id email } target { id email } } } pageInfo { endCursor } } }',
        { key: admin.key, variables: { after } },
      );
      expect(one.body.errors).toBeUndefined();
      expect(one.body.data!.auditEvents.edges[0].node).toEqual(node);
      after = one.body.data!.auditEvents.pageInfo.endCursor;
    }
    // An event whose actor is its target (or that has one of them) reads one user; others read two, with ANY.
    const userReads = app.queries.since(start).filter((text) => /FROM users u WHERE /.test(text));
    expect(userReads.some((text) => text.endsWith('u.id = $2'))).toBe(true);
    expect(userReads.some((text) => text.endsWith('u.id = ANY($2)'))).toBe(true);
  });

  /** `me` through `key` (or a bearer token) on an instance whose cache is empty: a lookup per credential. */
  async function meOn(instance: TestApp, credential: { key?: string; token?: string }): Promise<unknown> {
    const response = await instance.gql('{ me { id organization { id } } }', {
      key: credential.key,
      headers: credential.token === undefined ? undefined : { authorization: `Bearer ${credential.token}` },
    });
    expect(response.status).toBeLessThan(500);
    return {
      status: response.status,
      data: response.body.data,
      errors: response.body.errors?.map((e) => e.extensions),
    };
  }

  it('keys and session tokens on an auth-cache miss: one secret (one digest) and a keyring of two (ANY)', async () => {
    const token = await login(app, { email: member.email, password: 'member password 123' });
    const regenerated = await app.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      { key: admin.key, variables: { id: members[0].id } },
    );
    expect(regenerated.body.errors).toBeUndefined();
    const newKey = regenerated.body.data!.regenerateAccessKey.accessKey as string;
    const credentials = [
      { key: member.key },
      { key: members[0].key }, // in its grace period: the previous_key_digest arm
      { key: newKey },
      { key: deactivated.key },
      { key: otherMember.key },
      { key: `${member.key.slice(0, -1)}${member.key.endsWith('A') ? 'B' : 'A'}` },
      { key: 'cak_' + 'A'.repeat(38) },
      { key: 'not a key' },
      { key: "cak_' OR 1=1 --" },
      { key: 'x'.repeat(5000) },
      { token },
      { token: `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}` },
      { token: 'not a token' },
    ];
    const answers: unknown[][] = [];
    // The same secret alone, then as the newer of a keyring whose older secret made nothing here, then as
    // the older one of a keyring after a rotation began (the stored digests are still the old secret's).
    for (const keyring of [
      { secret },
      { secret, olderSecrets: [oldSecret] },
      { secret: oldSecret, olderSecrets: [secret] },
    ]) {
      const fresh = await startTestApp({
        database: { url: database.url, ...keyring },
        env: ENV,
        captureLogs: true,
      });
      try {
        const each = [];
        for (const credential of credentials) each.push(await meOn(fresh, credential));
        // One digest per secret: `= $1` with one secret, ANY with two.
        const lookups = fresh.queries.since(0).filter((text) => /access-key lookup|FROM sessions s/.test(text));
        expect(lookups.length).toBeGreaterThan(2);
        for (const text of lookups) expect(/ANY\(\$1\)/.test(text)).toBe(keyring.olderSecrets !== undefined);
        expect(fresh.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
        answers.push(each);
      } finally {
        await fresh.close();
      }
    }
    const [oneSecret, twoSecrets, rotating] = answers;
    expect(oneSecret[0]).toMatchObject({ status: 200, data: { me: { id: member.id } } });
    expect(oneSecret[1]).toMatchObject({ status: 200, data: { me: { id: members[0].id } } });
    expect(oneSecret[2]).toMatchObject({ status: 200, data: { me: { id: members[0].id } } });
    expect(oneSecret[3]).toMatchObject({ status: 401 });
    expect(oneSecret[10]).toMatchObject({ status: 200, data: { me: { id: member.id } } });
    expect(twoSecrets).toEqual(oneSecret);
    expect(rotating).toEqual(oneSecret);
  }, 60_000);
});
