import { generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { Client } from 'pg';

import { generateAccessKey, keyHint } from '../../src/access-keys/key-format';
import { FRESHNESS_MS } from '../../src/authentication/auth-cache';
import type { PauseHooks } from '../../src/authorization/authority';
import { ConfigError } from '../../src/config';
import { operatorMessage } from '../../src/operator-errors';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { keyRowsInReverseIdOrder, waitForLockWaiters } from '../helpers/locks';
import { createTestDatabase, startTestApp, type TestApp } from '../helpers/test-app';

const ME = '{ me { id } }';
const TOKEN_TYPE = 'crm_access_key';
const LEAK_AUDIT = `query ($action: AuditAction!, $target: ID!) {
  auditEvents(filter: { action: $action, targetUserId: $target }) {
    edges { node { action actorKind actor { id } target { id } location } }
  }
}`;
const KEY_FACTS = `query ($id: ID!) { user(id: $id) { accessKey accessKeyInfo {
  hint leakReportedAt leakReportLocation leakReportSource leakedKeyHint
} } }`;
const REPORT = `mutation ($key: String!, $location: String!) {
  reportLeakedAccessKey(key: $key, location: $location) { revoked user { id } }
}`;

interface SigningKey {
  id: string;
  privateKey: KeyObject;
  pem: string;
}

function signingKey(id: string): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { id, privateKey, pem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** GitHub's scheme: ECDSA P-256 / SHA-256 over the raw body, DER signature in base64. */
function signatureOf(body: string, key: SigningKey): string {
  return sign('sha256', Buffer.from(body), { key: key.privateKey, dsaEncoding: 'der' }).toString('base64');
}

/**
 * A signature whose base64 ends in padding (a 70- or 71-byte DER signature; ECDSA signs anew each time). A
 * lenient decoder stops reading at the padding, so whatever follows it in the header would go unread.
 */
function paddedSignatureOf(body: string, key: SigningKey): string {
  for (;;) {
    const signature = signatureOf(body, key);
    if (signature.endsWith('=')) return signature;
  }
}

function messageOf(tokens: string[], url = 'https://github.com/octo/leaky/blob/abc123/config.env'): string {
  return JSON.stringify(tokens.map((token) => ({ token, type: TOKEN_TYPE, url, source: 'content' })));
}

/**
 * A message as GitHub sends it; a header given as a list is sent once per value, as separate header lines,
 * and one given as null is not sent. `chunked`: the body goes in two chunks, without a content length.
 */
function post(
  app: TestApp,
  params: { body: string; headers?: Record<string, string | string[] | null>; chunked?: boolean },
): Promise<{ status: number; body: any }> {
  const given: Record<string, string | string[] | null> = { 'content-type': 'application/json', ...params.headers };
  const headers = Object.fromEntries(
    Object.entries(given).filter((entry): entry is [string, string | string[]] => entry[1] !== null),
  );
  return new Promise((resolve, reject) => {
    const request = http.request(
      app.url.replace(/\/graphql$/, '/secret-scanning/github'),
      { method: 'POST', headers },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
      },
    );
    request.on('error', reject);
    if (!params.chunked) return void request.end(params.body);
    const half = Math.floor(params.body.length / 2);
    request.write(params.body.slice(0, half));
    request.end(params.body.slice(half));
  });
}

function signedHeaders(body: string, key: SigningKey, asId = key.id): Record<string, string> {
  return { 'github-public-key-identifier': asId, 'github-public-key-signature': signatureOf(body, key) };
}

/** How a request carries a credential: a key in X-Access-Key, a session token as a bearer token. */
const withCredential = (credential: string) =>
  credential.startsWith('cas_') ? { headers: { authorization: `Bearer ${credential}` } } : { key: credential };

/** Polls until the key or session token is refused with 401, up to the revocation bound; the answer's status. */
async function refusedWithinBound(app: TestApp, credential: string): Promise<number> {
  const started = performance.now();
  for (;;) {
    const { status } = await app.gql(ME, withCredential(credential));
    if (status === 401 || performance.now() - started > FRESHNESS_MS) return status;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The audit events of one leak action on `target`, as an admin of their organization reads them. */
async function leakEvents(
  app: TestApp,
  params: { admin: TestUser; action: 'ACCESS_KEY_LEAK_REPORTED' | 'SESSION_TOKEN_LEAK_REPORTED'; target: string },
): Promise<unknown[]> {
  const audit = await app.gql(LEAK_AUDIT, {
    key: params.admin.key,
    variables: { action: params.action, target: params.target },
  });
  return audit.body.data!.auditEvents.edges.map((edge: any) => edge.node);
}

/** Asserts that no audit row about the user holds the secret: where it was found, never the key or token. */
async function expectNoAuditRowHolds(app: TestApp, params: { userId: string; secret: string }): Promise<void> {
  const rows = await app.dataSource.query(
    `SELECT row_to_json(e)::text AS row FROM audit_events e WHERE target_user_id = $1`,
    [params.userId],
  );
  for (const { row } of rows) expect(row).not.toContain(params.secret);
}

function errorLines(app: TestApp): string[] {
  return app.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
}

describe('leak reports: GitHub secret scanning (POST /secret-scanning/github)', () => {
  const github = signingKey('github-current');
  const githubOld = signingKey('github-old');
  const stranger = signingKey('not-github');
  let dir: string;
  let database: { url: string; drop(): Promise<void> };
  let a: TestApp;
  let b: TestApp;
  let admin: TestUser;
  const hooks: PauseHooks = {};

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-github-keys-'));
    const keysFile = path.join(dir, 'secret_scanning.json');
    fs.writeFileSync(
      keysFile,
      JSON.stringify({
        public_keys: [
          { key_identifier: github.id, key: github.pem, is_current: true },
          { key_identifier: githubOld.id, key: githubOld.pem, is_current: false },
        ],
      }),
    );
    database = await createTestDatabase();
    const secret = randomBytes(32);
    const env = { SECRET_SCANNING_GITHUB_KEYS: keysFile, AUTH_FAILURE_LIMIT: '10000' };
    a = await startTestApp({
      env: { ...env, LOG_LEVEL: 'info' },
      database: { url: database.url, secret },
      captureLogs: true,
      hooks,
    });
    b = await startTestApp({ env, database: { url: database.url, secret } });
    admin = await createOrganization(a);
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Everything a refused message must leave as it was. */
  async function snapshot(): Promise<unknown> {
    return {
      keys: await a.dataSource.query(
        `SELECT user_id, key_digest, previous_key_digest, leak_reported_at FROM access_keys ORDER BY user_id`,
      ),
      sessions: await a.dataSource.query(`SELECT id, revoked_at FROM sessions ORDER BY id`),
      audit: await a.dataSource.query(
        `SELECT count(*)::int AS n FROM audit_events WHERE action IN ('ACCESS_KEY_LEAK_REPORTED', 'ACCESS_KEY_REGENERATED', 'SESSION_TOKEN_LEAK_REPORTED')`,
      ),
    };
  }

  it('revokes a reported current key on both instances within the revocation bound, audits it, shows it, and labels it a true positive', async () => {
    const user = await createUser(a, admin);
    // Cached on B: only the announcement can make B refuse it.
    expect((await b.gql(ME, { key: user.key })).status).toBe(200);
    expect((await b.gql(ME, { key: user.key })).status).toBe(200);

    const body = messageOf([user.key]);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response).toEqual({
      status: 200,
      body: [{ token_raw: user.key, token_type: TOKEN_TYPE, label: 'true_positive' }],
    });

    expect((await a.gql(ME, { key: user.key })).status).toBe(401);
    expect(await refusedWithinBound(b, user.key)).toBe(401);

    expect(await leakEvents(a, { admin, action: 'ACCESS_KEY_LEAK_REPORTED', target: user.id })).toEqual([
      {
        action: 'ACCESS_KEY_LEAK_REPORTED',
        actorKind: 'SYSTEM',
        actor: null,
        target: { id: user.id },
        location: 'https://github.com/octo/leaky/blob/abc123/config.env (GitHub content)',
      },
    ]);
    await expectNoAuditRowHolds(a, { userId: user.id, secret: user.key });

    const facts = (await a.gql(KEY_FACTS, { key: admin.key, variables: { id: user.id } })).body.data!.user;
    expect(facts.accessKeyInfo).toMatchObject({
      leakReportLocation: 'https://github.com/octo/leaky/blob/abc123/config.env (GitHub content)',
      leakReportSource: 'GITHUB_SECRET_SCANNING',
      leakedKeyHint: keyHint(user.key),
    });
    expect(facts.accessKeyInfo.leakReportedAt).not.toBeNull();
    // A new key was issued, as after any regeneration, and it works.
    expect(facts.accessKey).not.toBe(user.key);
    expect((await b.gql(ME, { key: facts.accessKey })).status).toBe(200);
  });

  it('revokes a reported grace-period key together with the key that replaced it, and accepts the older GitHub key', async () => {
    const user = await createUser(a, admin);
    const regenerated = await a.gql(
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
      {
        key: admin.key,
        variables: { id: user.id },
      },
    );
    const current = regenerated.body.data!.regenerateAccessKey.accessKey as string;
    expect((await b.gql(ME, { key: user.key })).status).toBe(200);
    expect((await b.gql(ME, { key: current })).status).toBe(200);

    const body = messageOf([user.key]);
    const response = await post(a, { body, headers: signedHeaders(body, githubOld) });
    expect(response.body).toEqual([{ token_raw: user.key, token_type: TOKEN_TYPE, label: 'true_positive' }]);
    expect(await refusedWithinBound(b, user.key)).toBe(401);
    expect(await refusedWithinBound(b, current)).toBe(401);
    const facts = (await a.gql(KEY_FACTS, { key: admin.key, variables: { id: user.id } })).body.data!.user;
    expect(facts.accessKeyInfo.leakedKeyHint).toBe(keyHint(user.key));
  });

  it('labels tokens that are no key here false positives and changes nothing for them', async () => {
    const before = await snapshot();
    const unknown = generateAccessKey();
    const body = JSON.stringify([
      { token: unknown, type: TOKEN_TYPE, url: '', source: 'npm' },
      { token: 'cak_not-even-shaped-like-a-key', type: TOKEN_TYPE, url: null, source: 'commit' },
    ]);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response).toEqual({
      status: 200,
      body: [
        { token_raw: unknown, token_type: TOKEN_TYPE, label: 'false_positive' },
        { token_raw: 'cak_not-even-shaped-like-a-key', token_type: TOKEN_TYPE, label: 'false_positive' },
      ],
    });
    expect(await snapshot()).toEqual(before);
  });

  it('ends a reported live session token on both instances within the revocation bound, audits it, and labels it a true positive', async () => {
    const user = await createUser(a, admin, { password: TEST_PASSWORD });
    const token = await login(a, user);
    const other = await login(a, user);
    // Cached on B: only the announcement can make B refuse it.
    expect((await b.gql(ME, withCredential(token))).status).toBe(200);
    expect((await b.gql(ME, withCredential(token))).status).toBe(200);

    const body = JSON.stringify([
      {
        token,
        type: 'crm_access_session_token',
        url: 'https://github.com/octo/leaky/blob/abc123/notes.md',
        source: 'content',
      },
    ]);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response).toEqual({
      status: 200,
      body: [{ token_raw: token, token_type: 'crm_access_session_token', label: 'true_positive' }],
    });
    expect((await a.gql(ME, withCredential(token))).status).toBe(401);
    expect(await refusedWithinBound(b, token)).toBe(401);
    // Only the reported session ends: the user's other session and their key keep working.
    expect((await a.gql(ME, withCredential(other))).status).toBe(200);
    expect((await a.gql(ME, { key: user.key })).status).toBe(200);

    expect(await leakEvents(a, { admin, action: 'SESSION_TOKEN_LEAK_REPORTED', target: user.id })).toEqual([
      {
        action: 'SESSION_TOKEN_LEAK_REPORTED',
        actorKind: 'SYSTEM',
        actor: null,
        target: { id: user.id },
        location: 'https://github.com/octo/leaky/blob/abc123/notes.md (GitHub content)',
      },
    ]);
    await expectNoAuditRowHolds(a, { userId: user.id, secret: token });
  });

  it('labels a signed-out session token, an expired one and a key with a broken checksum false positives, and changes nothing', async () => {
    const user = await createUser(a, admin, { password: TEST_PASSWORD });
    const signedOut = await login(a, user);
    const logout = await a.gql('mutation { logout }', { headers: { authorization: `Bearer ${signedOut}` } });
    expect(logout.body.data).toEqual({ logout: true });
    const expired = await login(a, user);
    await a.dataSource.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_digest = $1`, [
      a.keyCrypto.digest(expired),
    ]);
    const lookalike = user.key.slice(0, -1) + (user.key.endsWith('a') ? 'b' : 'a');
    const before = await snapshot();
    const body = messageOf([signedOut, expired, lookalike, 'cas_not-even-shaped-like-a-token']);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response.body).toEqual(
      [signedOut, expired, lookalike, 'cas_not-even-shaped-like-a-token'].map((token) => ({
        token_raw: token,
        token_type: TOKEN_TYPE,
        label: 'false_positive',
      })),
    );
    expect(await snapshot()).toEqual(before);
    expect((await a.gql(ME, { key: user.key })).status).toBe(200);
  });

  it('one message with a key and a session token of two users: each revoked, each audited', async () => {
    const keyOwner = await createUser(a, admin);
    const tokenOwner = await createUser(a, admin, { password: TEST_PASSWORD });
    const token = await login(a, tokenOwner);
    const body = messageOf([token, keyOwner.key]);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response.body).toEqual([
      { token_raw: token, token_type: TOKEN_TYPE, label: 'true_positive' },
      { token_raw: keyOwner.key, token_type: TOKEN_TYPE, label: 'true_positive' },
    ]);
    expect((await a.gql(ME, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    expect((await a.gql(ME, { key: keyOwner.key })).status).toBe(401);
    expect((await a.gql(ME, { key: tokenOwner.key })).status).toBe(200);
    const actions = await a.dataSource.query(
      `SELECT action, target_user_id FROM audit_events WHERE target_user_id = ANY($1) AND action LIKE '%LEAK_REPORTED' ORDER BY id`,
      [[keyOwner.id, tokenOwner.id]],
    );
    expect(actions).toEqual(
      expect.arrayContaining([
        { action: 'ACCESS_KEY_LEAK_REPORTED', target_user_id: keyOwner.id },
        { action: 'SESSION_TOKEN_LEAK_REPORTED', target_user_id: tokenOwner.id },
      ]),
    );
    expect(actions).toHaveLength(2);
  });

  it.each([
    ['key', (user: TestUser) => Promise.resolve(user.key)],
    ['session token', (user: TestUser) => login(a, user)],
  ])('a request in flight with the reported %s acts no more once the report has committed', async (_case, signIn) => {
    const leakyAdmin = await createUser(a, admin, { role: Role.ADMIN, password: TEST_PASSWORD });
    const credential = await signIn(leakyAdmin);
    const victim = await createUser(a, admin);
    const body = messageOf([credential]);
    let report: Promise<{ status: number; body: any }> | null = null;
    // The regeneration below has authenticated with the credential; before its act is checked, GitHub's report commits.
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== leakyAdmin.id || report) return;
      report = post(a, { body, headers: signedHeaders(body, github) });
      await report;
    };
    try {
      const response = await a.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
        ...withCredential(credential),
        variables: { id: victim.id },
      });
      expect((await report!).body).toEqual([{ token_raw: credential, token_type: TOKEN_TYPE, label: 'true_positive' }]);
      expect(response.body.data).toBeNull();
      expect(response.body.errors).toEqual([
        expect.objectContaining({
          path: ['regenerateAccessKey'],
          extensions: { code: 'UNAUTHENTICATED', reason: 'INVALID_CREDENTIALS' },
        }),
      ]);
      expect((await a.gql(ME, { key: victim.key })).status).toBe(200);
    } finally {
      delete hooks.beforeAuthorityCheck;
    }
  });

  it('a report waits for an act the reported session token is already doing, then ends the token', async () => {
    const leakyAdmin = await createUser(a, admin, { role: Role.ADMIN, password: TEST_PASSWORD });
    const token = await login(a, leakyAdmin);
    const victim = await createUser(a, admin);
    const body = messageOf([token]);
    let report: Promise<{ status: number; body: any }> | null = null;
    // The act holds its locks (the token's session among them) while the report starts and waits for them.
    hooks.afterAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== leakyAdmin.id || report) return;
      report = post(a, { body, headers: signedHeaders(body, github) });
      await waitForLockWaiters(a, 1);
    };
    try {
      const response = await a.gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', {
        headers: { authorization: `Bearer ${token}` },
        variables: { id: victim.id },
      });
      expect(response.body.errors).toBeUndefined();
    } finally {
      delete hooks.afterAuthorityCheck;
    }
    expect((await report!).body).toEqual([{ token_raw: token, token_type: TOKEN_TYPE, label: 'true_positive' }]);
    expect((await a.gql(ME, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
  });

  it('ends a session token of a deactivated organization too: reactivating the organization does not bring it back', async () => {
    const otherAdmin = await createOrganization(a, 'Paused Clinic');
    const member = await createUser(a, otherAdmin, { password: TEST_PASSWORD });
    const token = await login(a, member);
    await a.dataSource.query(`UPDATE organizations SET is_active = false WHERE id = $1`, [otherAdmin.organizationId]);
    const body = messageOf([token]);
    expect((await post(a, { body, headers: signedHeaders(body, github) })).body).toEqual([
      { token_raw: token, token_type: TOKEN_TYPE, label: 'true_positive' },
    ]);
    await a.dataSource.query(`UPDATE organizations SET is_active = true WHERE id = $1`, [otherAdmin.organizationId]);
    expect((await a.gql(ME, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    expect((await a.gql(ME, { key: member.key })).status).toBe(200);
  });

  it('one message with the same key twice and keys of two organizations: each revoked once, audited in its organization', async () => {
    const ours = await createUser(a, admin);
    const otherAdmin = await createOrganization(a, 'Other Clinic');
    const theirs = await createUser(a, otherAdmin);
    const body = messageOf([ours.key, theirs.key, ours.key]);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response.body.map((label: { label: string }) => label.label)).toEqual([
      'true_positive',
      'true_positive',
      'true_positive',
    ]);
    for (const user of [ours, theirs]) {
      expect((await a.gql(ME, { key: user.key })).status).toBe(401);
      const rows = await a.dataSource.query(
        `SELECT action, organization_id FROM audit_events WHERE target_user_id = $1 AND action IN ('ACCESS_KEY_LEAK_REPORTED', 'ACCESS_KEY_REGENERATED') ORDER BY id`,
        [user.id],
      );
      expect(rows).toEqual([
        { action: 'ACCESS_KEY_LEAK_REPORTED', organization_id: user.organizationId },
        { action: 'ACCESS_KEY_REGENERATED', organization_id: user.organizationId },
      ]);
    }
  });

  it('an admin deactivated while their reportLeakedAccessKey runs: UNAUTHENTICATED, and the key keeps working', async () => {
    const reporter = await createUser(a, admin, { role: Role.ADMIN });
    const member = await createUser(a, admin);
    hooks.beforeAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== reporter.id) return;
      const deactivated = await a.gql('mutation ($id: ID!) { deactivateUser(id: $id) { isActive } }', {
        key: admin.key,
        variables: { id: reporter.id },
      });
      expect(deactivated.body.data).toEqual({ deactivateUser: { isActive: false } });
    };
    try {
      const response = await a.gql(REPORT, { key: reporter.key, variables: { key: member.key, location: 'a ticket' } });
      expect(response.body.data).toBeNull();
      expect(response.body.errors![0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    } finally {
      delete hooks.beforeAuthorityCheck;
    }
    expect((await a.gql(ME, { key: member.key })).status).toBe(200);
    const [{ n }] = await a.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE target_user_id = $1 AND action = 'ACCESS_KEY_LEAK_REPORTED'`,
      [member.id],
    );
    expect(n).toBe(0);
  });

  it.each([
    ['text/plain', { 'content-type': 'text/plain' }, false],
    ['JSON with a charset', { 'content-type': 'application/json; charset=utf-8' }, false],
    ['no content type', { 'content-type': null }, false],
    ['a chunked body', {}, true],
  ] as const)('reads the signed bytes whatever the framing: %s', async (_case, headers, chunked) => {
    const unknown = generateAccessKey();
    const body = messageOf([unknown]);
    const response = await post(a, { body, headers: { ...signedHeaders(body, github), ...headers }, chunked });
    expect(response).toEqual({
      status: 200,
      body: [{ token_raw: unknown, token_type: TOKEN_TYPE, label: 'false_positive' }],
    });
  });

  it('revokes a key whose location GitHub gives with characters no text field shows (NUL, controls, direction overrides, lone surrogates): they are stored replaced', async () => {
    const user = await createUser(a, admin);
    const body = JSON.stringify([
      {
        token: user.key,
        type: TOKEN_TYPE,
        url: 'https://github.com/octo/a\u0000b\u001b[2J\u202egpj.exe\ud800',
        source: 'con\ntent',
      },
    ]);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response).toEqual({
      status: 200,
      body: [{ token_raw: user.key, token_type: TOKEN_TYPE, label: 'true_positive' }],
    });
    expect((await a.gql(ME, { key: user.key })).status).toBe(401);
    const shown = 'https://github.com/octo/a\ufffdb\ufffd[2J\ufffdgpj.exe\ufffd (GitHub con\ufffdtent)';
    const facts = (await a.gql(KEY_FACTS, { key: admin.key, variables: { id: user.id } })).body.data!.user;
    expect(facts.accessKeyInfo.leakReportLocation).toBe(shown);
    const events = await leakEvents(a, { admin, action: 'ACCESS_KEY_LEAK_REPORTED', target: user.id });
    expect(events.map((event: any) => event.location)).toEqual([shown]);
  });

  it("stores GitHub's location without a key or token in its URL", async () => {
    const user = await createUser(a, admin);
    const url = `https://github.com/octo/leaky/blob/abc123/config.env?token=${admin.key}#L1-cak_${user.key.slice(4)}`;
    const body = messageOf([user.key], url);
    const response = await post(a, { body, headers: signedHeaders(body, github) });
    expect(response.status).toBe(200);
    const shown =
      'https://github.com/octo/leaky/blob/abc123/config.env?token=[redacted]#L1-[redacted] (GitHub content)';
    const facts = (await a.gql(KEY_FACTS, { key: admin.key, variables: { id: user.id } })).body.data!.user;
    expect(facts.accessKeyInfo.leakReportLocation).toBe(shown);
    const events = await leakEvents(a, { admin, action: 'ACCESS_KEY_LEAK_REPORTED', target: user.id });
    expect(events.map((event: any) => event.location)).toEqual([shown]);
  });

  // Every act locks organization, then users, then key rows (Authority). A report that locked key rows first
  // deadlocked with an admin's act that holds its own key row and then writes the reported user's.
  it.each([
    [
      'regenerates',
      'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }',
      (user: TestUser) => ({ id: user.id }),
    ],
    [
      'reports',
      'mutation ($key: String!) { reportLeakedAccessKey(key: $key, location: "a ticket") { revoked } }',
      (user: TestUser) => ({ key: user.key }),
    ],
  ])(
    'an admin who %s the key of a user while a report names both their keys: one waits for the other, no deadlock',
    async (_case, act, variablesOf) => {
      const [first, second] = (
        await Promise.all([createUser(a, admin, { role: Role.ADMIN }), createUser(a, admin, { role: Role.ADMIN })])
      ).sort((x, y) => (x.id < y.id ? -1 : 1));
      // The report takes the rows by user id (first, then second); the admin (second) holds its own first.
      const body = messageOf([first.key, second.key]);
      let report: Promise<{ status: number; body: any }> | null = null;
      hooks.afterAuthorityCheck = async (actor) => {
        if (actor.principal.userId !== second.id || report) return;
        report = post(a, { body, headers: signedHeaders(body, github) });
        await waitForLockWaiters(a, 1);
      };
      try {
        const response = await a.gql(act, { key: second.key, variables: variablesOf(first) });
        expect(response.status).toBe(200);
        expect(response.body.errors).toBeUndefined();
        // The report waited for the admin's act: the first key was replaced by then, the second is revoked now.
        expect(await report!).toEqual({
          status: 200,
          body: [
            { token_raw: first.key, token_type: TOKEN_TYPE, label: 'false_positive' },
            { token_raw: second.key, token_type: TOKEN_TYPE, label: 'true_positive' },
          ],
        });
        expect((await a.gql(ME, { key: first.key })).status).toBe(401);
        expect((await a.gql(ME, { key: second.key })).status).toBe(401);
      } finally {
        delete hooks.afterAuthorityCheck;
      }
    },
  );

  it("revokes a deactivated user's key too: reactivating the user does not bring the leaked key back", async () => {
    const member = await createUser(a, admin);
    const setActive = (active: boolean) =>
      a.gql(`mutation ($id: ID!) { ${active ? 'reactivateUser' : 'deactivateUser'}(id: $id) { isActive } }`, {
        key: admin.key,
        variables: { id: member.id },
      });
    await setActive(false);
    const body = messageOf([member.key]);
    expect((await post(a, { body, headers: signedHeaders(body, github) })).body).toEqual([
      { token_raw: member.key, token_type: TOKEN_TYPE, label: 'true_positive' },
    ]);
    expect((await setActive(true)).body.data).toEqual({ reactivateUser: { isActive: true } });
    expect((await a.gql(ME, { key: member.key })).status).toBe(401);
  });

  it('a key regenerated with a grace period while the report waits: the report revokes it as a grace-period key, and its successor', async () => {
    const member = await createUser(a, admin);
    const body = messageOf([member.key]);
    let report: Promise<{ status: number; body: any }> | null = null;
    hooks.afterAuthorityCheck = async (actor) => {
      if (actor.principal.userId !== admin.id || report) return;
      report = post(a, { body, headers: signedHeaders(body, github) });
      await waitForLockWaiters(a, 1);
    };
    let successor: string;
    try {
      const regenerated = await a.gql(
        'mutation ($id: ID!) { regenerateAccessKey(userId: $id, gracePeriodSeconds: 3600) { accessKey } }',
        {
          key: admin.key,
          variables: { id: member.id },
        },
      );
      successor = regenerated.body.data!.regenerateAccessKey.accessKey;
    } finally {
      delete hooks.afterAuthorityCheck;
    }
    expect((await report!).body).toEqual([{ token_raw: member.key, token_type: TOKEN_TYPE, label: 'true_positive' }]);
    expect((await a.gql(ME, { key: member.key })).status).toBe(401);
    expect((await a.gql(ME, { key: successor })).status).toBe(401);
  });

  it('the batched write of key uses and a report that names the same keys do not deadlock: the write waits', async () => {
    // The report locks the key rows by user id; a write that updates rows as it scans them reaches the second
    // row first.
    const { first, second } = await keyRowsInReverseIdOrder(a, {
      makeUser: () => createUser(a, admin),
      relocate: async (smaller) => {
        await a.dataSource.query(`UPDATE access_keys SET leak_report_location = NULL WHERE user_id = $1`, [smaller.id]);
      },
    });

    const holder = new Client({ connectionString: a.databaseUrl });
    await holder.connect();
    const logged = a.logs.length;
    try {
      // A share lock on the second key row that the report's FOR UPDATE waits for, and the use write does not.
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM access_keys WHERE user_id = $1 FOR KEY SHARE`, [second.id]);
      const body = messageOf([first.key, second.key]);
      const report = post(a, { body, headers: signedHeaders(body, github) });
      await waitForLockWaiters(a, 1);
      for (const user of [first, second])
        a.services.accessKeys.markUsed(a.keyCrypto.digest(user.key).toString('base64'));
      // The write skips the rows the other side holds, then waits for each of them alone.
      const flushed = a.services.accessKeys.flushUse();
      await waitForLockWaiters(a, 2);
      await holder.query('COMMIT');
      expect(await report).toEqual({
        status: 200,
        body: [
          { token_raw: first.key, token_type: TOKEN_TYPE, label: 'true_positive' },
          { token_raw: second.key, token_type: TOKEN_TYPE, label: 'true_positive' },
        ],
      });
      await flushed;
      expect(a.logs.slice(logged).filter((line) => line.includes('could not record access key use'))).toEqual([]);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  });

  describe('when the message is not one GitHub signed, or was processed already', () => {
    let user: TestUser;
    let body: string;
    beforeAll(async () => {
      user = await createUser(a, admin);
      body = messageOf([user.key]);
    });

    it.each([
      ['unsigned', () => ({})],
      ['signed without a key identifier', () => ({ 'github-public-key-signature': signatureOf(body, github) })],
      ['signed by another key under GitHub’s key identifier', () => signedHeaders(body, stranger, github.id)],
      ['signed by a key nobody configured', () => signedHeaders(body, stranger)],
      [
        'signed with garbage',
        () => ({ 'github-public-key-identifier': github.id, 'github-public-key-signature': 'bm90IGEgc2lnbmF0dXJl' }),
      ],
      [
        'signed as raw r||s (IEEE P1363), not DER',
        () => ({
          'github-public-key-identifier': github.id,
          'github-public-key-signature': sign('sha256', Buffer.from(body), {
            key: github.privateKey,
            dsaEncoding: 'ieee-p1363',
          }).toString('base64'),
        }),
      ],
      // Only one exact header value is the signature: no second reading of a header, no skipped characters.
      [
        'the right signature, in two header lines',
        () => {
          const signature = paddedSignatureOf(body, github);
          return { 'github-public-key-identifier': github.id, 'github-public-key-signature': [signature, signature] };
        },
      ],
      [
        'the right signature followed by a stranger’s',
        () => ({
          'github-public-key-identifier': github.id,
          'github-public-key-signature': `${paddedSignatureOf(body, github)}, ${signatureOf(body, stranger)}`,
        }),
      ],
      [
        'the right signature with characters outside base64 in it',
        () => {
          const signature = signatureOf(body, github);
          return {
            'github-public-key-identifier': github.id,
            'github-public-key-signature': `${signature.slice(0, 20)}!*${signature.slice(20)}`,
          };
        },
      ],
      [
        'the right signature with a space in it',
        () => {
          const signature = signatureOf(body, github);
          return {
            'github-public-key-identifier': github.id,
            'github-public-key-signature': `${signature.slice(0, 20)} ${signature.slice(20)}`,
          };
        },
      ],
    ])('%s: 401 and nothing changes', async (_case, headers) => {
      const before = await snapshot();
      const response = await post(a, { body, headers: headers() as Record<string, string | string[]> });
      expect(response.status).toBe(401);
      expect(response.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
      expect(await snapshot()).toEqual(before);
      expect((await a.gql(ME, { key: user.key })).status).toBe(200);
    });

    it('with the body changed after signing (another user’s key put in): 401 and nothing changes', async () => {
      const other = await createUser(a, admin);
      const before = await snapshot();
      const changed = body.replace(user.key, other.key);
      expect(changed).not.toBe(body);
      const response = await post(a, { body: changed, headers: signedHeaders(body, github) });
      expect(response.status).toBe(401);
      expect(await snapshot()).toEqual(before);
      expect((await a.gql(ME, { key: user.key })).status).toBe(200);
      expect((await a.gql(ME, { key: other.key })).status).toBe(200);
    });

    it('larger than 64 KiB, even correctly signed: 413 and nothing changes', async () => {
      const before = await snapshot();
      const big = JSON.stringify([
        { token: user.key, type: TOKEN_TYPE, url: `https://github.com/${'x'.repeat(70_000)}`, source: 'content' },
      ]);
      const response = await post(a, { body: big, headers: signedHeaders(big, github) });
      expect(response.status).toBe(413);
      expect(await snapshot()).toEqual(before);
      expect((await a.gql(ME, { key: user.key })).status).toBe(200);
    });

    it('exactly 64 KiB is read; one byte more is 413', async () => {
      const sized = (bytes: number) => {
        const text = messageOf([generateAccessKey()], '');
        return text.replace('"url":""', `"url":"${'u'.repeat(bytes - Buffer.byteLength(text))}"`);
      };
      const atLimit = sized(64 * 1024);
      expect(Buffer.byteLength(atLimit)).toBe(64 * 1024);
      expect((await post(a, { body: atLimit, headers: signedHeaders(atLimit, github) })).status).toBe(200);
      const over = sized(64 * 1024 + 1);
      expect((await post(a, { body: over, headers: signedHeaders(over, github) })).status).toBe(413);
    });

    it('signed, but not the program’s JSON: 400 and nothing changes', async () => {
      const before = await snapshot();
      for (const text of ['{"token":"x"}', '[]', '[{"token": 1, "type": "t"}]', 'not json']) {
        const response = await post(a, { body: text, headers: signedHeaders(text, github) });
        expect(response.status).toBe(400);
      }
      expect(await snapshot()).toEqual(before);
    });

    it('signed, but labelled with a Content-Encoding (gzip): 415, nothing changes', async () => {
      const before = await snapshot();
      const response = await post(a, { body, headers: { ...signedHeaders(body, github), 'content-encoding': 'gzip' } });
      expect(response.status).toBe(415);
      expect(response.body.errors[0].message).toBe(
        'Content-Encoding "gzip" is not supported: send the body uncompressed.',
      );
      expect(await snapshot()).toEqual(before);
      expect((await a.gql(ME, { key: user.key })).status).toBe(200);
    });

    it.each<[string, Record<string, string | string[]>, RegExp]>([
      ['two Content-Type lines', { 'content-type': ['application/json', 'text/plain'] }, /^Send Content-Type once/],
      [
        'two identical Content-Type lines',
        { 'content-type': ['application/json', 'application/json'] },
        /^Send Content-Type once/,
      ],
      ['two charsets', { 'content-type': 'application/json; charset=utf-8; charset=latin1' }, /^Name the charset once/],
    ])(
      'signed, but with an ambiguous Content-Type (%s): 400 as /graphql answers it, nothing changes',
      async (_l, headers, message) => {
        const before = await snapshot();
        const response = await post(a, { body, headers: { ...signedHeaders(body, github), ...headers } });
        expect(response.status).toBe(400);
        expect(response.body.errors).toEqual([
          {
            message: expect.stringMatching(message),
            extensions: { code: 'BAD_REQUEST', requestId: expect.any(String) },
          },
        ]);
        expect(await snapshot()).toEqual(before);
        expect((await a.gql(ME, { key: user.key })).status).toBe(200);
      },
    );

    it('replayed (the same signed message a second time, on either instance): 409 and nothing changes', async () => {
      const unknown = generateAccessKey();
      const message = messageOf([unknown]);
      const headers = signedHeaders(message, github);
      expect((await post(a, { body: message, headers })).status).toBe(200);
      const before = await snapshot();
      const again = await post(a, { body: message, headers });
      expect(again.status).toBe(409);
      expect(again.body.errors[0].extensions.code).toBe('CONFLICT');
      // Signed anew (ECDSA signatures differ each time), still the same message.
      expect((await post(b, { body: message, headers: signedHeaders(message, github) })).status).toBe(409);
      expect(await snapshot()).toEqual(before);
    });

    it('wrote no error-level log line for any of it', () => {
      expect(errorLines(a)).toEqual([]);
    });
  });
});

describe('leak reports: refused messages count as failed authentications of the address', () => {
  it('after AUTH_FAILURE_LIMIT of them the address gets 429, even with a correctly signed message', async () => {
    const github = signingKey('github-current');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-github-keys-'));
    const keysFile = path.join(dir, 'secret_scanning.json');
    fs.writeFileSync(
      keysFile,
      JSON.stringify({ public_keys: [{ key_identifier: github.id, key: github.pem, is_current: true }] }),
    );
    const app = await startTestApp({ env: { SECRET_SCANNING_GITHUB_KEYS: keysFile, AUTH_FAILURE_LIMIT: '2' } });
    try {
      const body = messageOf([generateAccessKey()]);
      expect((await post(app, { body })).status).toBe(401);
      expect((await post(app, { body, headers: signedHeaders(body, signingKey('x'), github.id) })).status).toBe(401);
      const blocked = await post(app, { body, headers: signedHeaders(body, github) });
      expect(blocked.status).toBe(429);
      expect(blocked.body.errors[0].extensions.code).toBe('RATE_LIMITED');
      const [{ n }] = await app.dataSource.query(`SELECT count(*)::int AS n FROM secret_scanning_messages`);
      expect(n).toBe(0);
    } finally {
      await app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('leak reports: a keys file that lists one key identifier twice', () => {
  it('accepts a message signed by either key listed under it', async () => {
    const first = signingKey('github');
    const second = signingKey('github');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-github-keys-'));
    const keysFile = path.join(dir, 'secret_scanning.json');
    fs.writeFileSync(
      keysFile,
      JSON.stringify({
        public_keys: [
          { key_identifier: 'github', key: first.pem, is_current: false },
          { key_identifier: 'github', key: second.pem, is_current: true },
        ],
      }),
    );
    const app = await startTestApp({ env: { SECRET_SCANNING_GITHUB_KEYS: keysFile } });
    try {
      for (const key of [first, second]) {
        const body = messageOf([generateAccessKey()]);
        expect((await post(app, { body, headers: signedHeaders(body, key) })).status).toBe(200);
      }
    } finally {
      await app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('leak reports: a failed attempt, and the logs at debug level with every request logged', () => {
  const github = signingKey('github-current');
  let dir: string;
  let app: TestApp;
  let admin: TestUser;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-github-keys-'));
    const keysFile = path.join(dir, 'secret_scanning.json');
    fs.writeFileSync(
      keysFile,
      JSON.stringify({ public_keys: [{ key_identifier: github.id, key: github.pem, is_current: true }] }),
    );
    app = await startTestApp({
      env: {
        SECRET_SCANNING_GITHUB_KEYS: keysFile,
        AUTH_FAILURE_LIMIT: '10000',
        LOG_LEVEL: 'debug',
        LOG_REQUESTS: '1',
      },
      captureLogs: true,
    });
    admin = await createOrganization(app);
  });
  afterAll(async () => {
    await app?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a message whose processing failed in the database changed nothing and is taken when sent again', async () => {
    const user = await createUser(app, admin);
    const body = messageOf([user.key]);
    const headers = signedHeaders(body, github);
    await app.dataSource.query(`
      CREATE FUNCTION fail_leak_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$;
      CREATE TRIGGER fail_leak_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_leak_audit();`);
    try {
      expect((await post(app, { body, headers })).status).toBe(500);
    } finally {
      await app.dataSource.query(`DROP TRIGGER fail_leak_audit ON audit_events; DROP FUNCTION fail_leak_audit();`);
    }
    expect((await app.gql(ME, { key: user.key })).status).toBe(200);
    expect(await post(app, { body, headers })).toEqual({
      status: 200,
      body: [{ token_raw: user.key, token_type: TOKEN_TYPE, label: 'true_positive' }],
    });
    expect((await app.gql(ME, { key: user.key })).status).toBe(401);
  });

  it('a message with a key and a session token that fails at the session end changed nothing: the key and the token both still work', async () => {
    const keyOwner = await createUser(app, admin);
    const tokenOwner = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, tokenOwner);
    const bearer = withCredential(token);
    // The key is revoked first in the transaction; only the session token's audit row fails.
    const body = messageOf([keyOwner.key, token]);
    const headers = signedHeaders(body, github);
    await app.dataSource.query(`
      CREATE FUNCTION fail_session_leak_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$;
      CREATE TRIGGER fail_session_leak_audit BEFORE INSERT ON audit_events FOR EACH ROW
        WHEN (NEW.action = 'SESSION_TOKEN_LEAK_REPORTED') EXECUTE FUNCTION fail_session_leak_audit();`);
    try {
      expect((await post(app, { body, headers })).status).toBe(500);
    } finally {
      await app.dataSource.query(
        `DROP TRIGGER fail_session_leak_audit ON audit_events; DROP FUNCTION fail_session_leak_audit();`,
      );
    }
    expect((await app.gql(ME, { key: keyOwner.key })).status).toBe(200);
    expect((await app.gql(ME, bearer)).status).toBe(200);
    expect(await post(app, { body, headers })).toEqual({
      status: 200,
      body: [
        { token_raw: keyOwner.key, token_type: TOKEN_TYPE, label: 'true_positive' },
        { token_raw: token, token_type: TOKEN_TYPE, label: 'true_positive' },
      ],
    });
    expect((await app.gql(ME, { key: keyOwner.key })).status).toBe(401);
    expect((await app.gql(ME, bearer)).status).toBe(401);
  });

  it('no log line at any level holds a reported key, whatever the outcome', async () => {
    const reported = await createUser(app, admin);
    const byAdmin = await createUser(app, admin);
    const unknown = generateAccessKey();
    const signedIn = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, signedIn);
    const revoked = messageOf([reported.key, unknown, token]);
    await post(app, { body: revoked, headers: signedHeaders(revoked, github) });
    await post(app, { body: revoked, headers: signedHeaders(revoked, github) }); // 409
    await post(app, { body: revoked, headers: signedHeaders(revoked, signingKey(github.id)) }); // 401
    const notTheProgramsJson = JSON.stringify({ token: byAdmin.key });
    await post(app, { body: notTheProgramsJson, headers: signedHeaders(notTheProgramsJson, github) }); // 400
    await app.gql(REPORT, { key: admin.key, variables: { key: byAdmin.key, location: 'bad\nlocation' } });
    await app.gql(REPORT, { key: admin.key, variables: { key: byAdmin.key.slice(0, -1), location: 'x' } });
    await app.gql(REPORT, { key: admin.key, variables: { key: byAdmin.key, location: 'a ticket' } });
    await app.services.accessKeys.flushUse();
    expect(app.logs.some((line) => line.includes('/secret-scanning/github'))).toBe(true);
    const text = app.logs.join('\n');
    for (const secret of [
      reported.key,
      byAdmin.key,
      byAdmin.key.slice(0, -1),
      unknown,
      admin.key,
      token,
      'cak_',
      'cas_',
    ]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe('leak reports: the endpoint is off without SECRET_SCANNING_GITHUB_KEYS', () => {
  it('answers 404', async () => {
    const app = await startTestApp();
    try {
      const response = await fetch(app.url.replace(/\/graphql$/, '/secret-scanning/github'), {
        method: 'POST',
        body: '[]',
      });
      expect(response.status).toBe(404);
    } finally {
      await app.close();
    }
  });
});

describe('leak reports: a bad SECRET_SCANNING_GITHUB_KEYS file stops startup with one line that says what to fix', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-bad-keys-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString();
  const otherCurve = (type: 'ec' | 'ed25519', options?: { namedCurve: string }) =>
    (generateKeyPairSync as (type: string, options?: object) => { publicKey: KeyObject })(type, options)
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
  it.each([
    ['missing', null, /cannot be read \(ENOENT\)/],
    [
      'not JSON',
      'not json',
      /is not JSON: save the answer of https:\/\/api\.github\.com\/meta\/public_keys\/secret_scanning/,
    ],
    ['without keys', '{"public_keys":[]}', /holds no "public_keys" list/],
    [
      'a key without identifier',
      JSON.stringify({ public_keys: [{ key: signingKey('x').pem }] }),
      /public_keys\[0\] has no "key_identifier"/,
    ],
    [
      'a key that is not PEM',
      JSON.stringify({ public_keys: [{ key_identifier: 'k1', key: 'MFkw' }] }),
      /the key "k1" is not a PEM public key/,
    ],
    [
      'an RSA key',
      JSON.stringify({ public_keys: [{ key_identifier: 'k1', key: rsa }] }),
      /the key "k1" is not an ECDSA P-256 key/,
    ],
    [
      'a P-384 key',
      JSON.stringify({ public_keys: [{ key_identifier: 'k1', key: otherCurve('ec', { namedCurve: 'P-384' }) }] }),
      /the key "k1" is not an ECDSA P-256 key/,
    ],
    [
      'an Ed25519 key',
      JSON.stringify({ public_keys: [{ key_identifier: 'k1', key: otherCurve('ed25519') }] }),
      /the key "k1" is not an ECDSA P-256 key/,
    ],
  ])('%s', async (_case, contents, message) => {
    const file = path.join(dir, `${_case.replace(/\W+/g, '-')}.json`);
    if (contents !== null) fs.writeFileSync(file, contents);
    const started = startTestApp({ env: { SECRET_SCANNING_GITHUB_KEYS: file } });
    await expect(started).rejects.toBeInstanceOf(ConfigError);
    const line = operatorMessage(await started.catch((error: unknown) => error));
    expect(line).toMatch(message);
    expect(line).toContain(`SECRET_SCANNING_GITHUB_KEYS (${file})`);
    expect(line).not.toContain('\n');
  });
});

describe('reportLeakedAccessKey', () => {
  let app: TestApp;
  let admin: TestUser;
  let otherAdmin: TestUser;

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '10000' } });
    admin = await createOrganization(app, 'Acme Clinic');
    otherAdmin = await createOrganization(app, 'Other Clinic');
  });
  afterAll(() => app.close());

  async function leakRows(organizationId: string): Promise<number> {
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE organization_id = $1 AND action = 'ACCESS_KEY_LEAK_REPORTED'`,
      [organizationId],
    );
    return n;
  }

  it("revokes a key of the admin's own organization and audits who reported it and where it was found", async () => {
    const member = await createUser(app, admin);
    const response = await app.gql(REPORT, {
      key: admin.key,
      variables: { key: member.key, location: 'pasted in the #support channel' },
    });
    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: true, user: { id: member.id } } } });
    expect((await app.gql(ME, { key: member.key })).status).toBe(401);

    expect(await leakEvents(app, { admin, action: 'ACCESS_KEY_LEAK_REPORTED', target: member.id })).toEqual([
      {
        action: 'ACCESS_KEY_LEAK_REPORTED',
        actorKind: 'ACCESS_KEY',
        actor: { id: admin.id },
        target: { id: member.id },
        location: 'pasted in the #support channel',
      },
    ]);
    const facts = (await app.gql(KEY_FACTS, { key: admin.key, variables: { id: member.id } })).body.data!.user;
    expect(facts.accessKeyInfo).toMatchObject({
      leakReportSource: 'ADMIN',
      leakReportLocation: 'pasted in the #support channel',
      leakedKeyHint: keyHint(member.key),
    });
    expect((await app.gql(ME, { key: facts.accessKey })).status).toBe(200);
  });

  it("answers another organization's key exactly like an unknown one, and changes nothing", async () => {
    const foreign = await createUser(app, otherAdmin);
    const before = await app.dataSource.query(`SELECT key_digest FROM access_keys WHERE user_id = $1`, [foreign.id]);
    const foreignAnswer = await app.gql(REPORT, {
      key: admin.key,
      variables: { key: foreign.key, location: 'a gist' },
    });
    const unknownAnswer = await app.gql(REPORT, {
      key: admin.key,
      variables: { key: generateAccessKey(), location: 'a gist' },
    });
    expect(foreignAnswer.status).toBe(unknownAnswer.status);
    expect(foreignAnswer.body).toEqual(unknownAnswer.body);
    expect(foreignAnswer.body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
    expect((await app.gql(ME, { key: foreign.key })).status).toBe(200);
    expect(await app.dataSource.query(`SELECT key_digest FROM access_keys WHERE user_id = $1`, [foreign.id])).toEqual(
      before,
    );
    expect(await leakRows(otherAdmin.organizationId)).toBe(0);
  });

  it("ends a session token of a user of the admin's own organization and audits who reported it and where", async () => {
    const member = await createUser(app, admin, { password: TEST_PASSWORD });
    const token = await login(app, member);
    const bearer = withCredential(token);
    expect((await app.gql(ME, bearer)).status).toBe(200);
    const response = await app.gql(REPORT, {
      key: admin.key,
      variables: { key: ` ${token} `, location: 'a screenshot' },
    });
    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: true, user: { id: member.id } } } });
    expect((await app.gql(ME, bearer)).status).toBe(401);
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);
    expect(await leakEvents(app, { admin, action: 'SESSION_TOKEN_LEAK_REPORTED', target: member.id })).toEqual([
      {
        action: 'SESSION_TOKEN_LEAK_REPORTED',
        actorKind: 'ACCESS_KEY',
        actor: { id: admin.id },
        target: { id: member.id },
        location: 'a screenshot',
      },
    ]);
    // Reported again: the session is ended already, so nothing is revoked.
    const again = await app.gql(REPORT, { key: admin.key, variables: { key: token, location: 'a screenshot' } });
    expect(again.body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
  });

  it("answers another organization's session token exactly like an unknown key, and the session keeps working", async () => {
    const foreign = await createUser(app, otherAdmin, { password: TEST_PASSWORD });
    const token = await login(app, foreign);
    const response = await app.gql(REPORT, { key: admin.key, variables: { key: token, location: 'a gist' } });
    expect(response.body).toEqual({ data: { reportLeakedAccessKey: { revoked: false, user: null } } });
    expect((await app.gql(ME, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE target_user_id = $1 AND action = 'SESSION_TOKEN_LEAK_REPORTED'`,
      [foreign.id],
    );
    expect(n).toBe(0);
  });

  it.each([Role.MEMBER, Role.MANAGER])('%s: FORBIDDEN, and the key keeps working', async (role) => {
    const caller = await createUser(app, admin, { role });
    const victim = await createUser(app, admin);
    const before = await leakRows(admin.organizationId);
    const response = await app.gql(REPORT, { key: caller.key, variables: { key: victim.key, location: 'somewhere' } });
    expect(response.body.data).toBeNull();
    expect(response.body.errors![0].extensions!.code).toBe('FORBIDDEN');
    expect((await app.gql(ME, { key: victim.key })).status).toBe(200);
    expect(await leakRows(admin.organizationId)).toBe(before);
  });

  it.each([
    ['a line break', 'line one\nline two'],
    ['an escape sequence', 'a gist \u001b[2J'],
    ['a direction override', 'https://chat.example/\u202egpj.exe'],
    ['a zero-width space', 'https://chat.exam\u200bple/4711'],
    ['more than 2,000 characters', `https://chat.example/${'x'.repeat(2000)}`],
  ])('refuses a location with %s as BAD_USER_INPUT, and the key keeps working', async (_case, location) => {
    const member = await createUser(app, admin);
    const before = await leakRows(admin.organizationId);
    const response = await app.gql(REPORT, { key: admin.key, variables: { key: member.key, location } });
    expect(response.body.data).toBeNull();
    expect(response.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'location' });
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);
    expect(await leakRows(admin.organizationId)).toBe(before);
  });

  it('stores a location without the keys or session tokens pasted into it, live ones included', async () => {
    const member = await createUser(app, admin);
    const session = await login(app, await createUser(app, admin, { password: TEST_PASSWORD }));
    const location = `https://chat.example/x?key=${member.key} and admin ${admin.key}, CAS_${session.slice(4)} (x_${admin.key})`;
    const response = await app.gql(REPORT, { key: admin.key, variables: { key: member.key, location } });
    expect(response.body.data).toEqual({ reportLeakedAccessKey: { revoked: true, user: { id: member.id } } });
    const shown = 'https://chat.example/x?key=[redacted] and admin [redacted], [redacted] (x_[redacted])';
    const facts = (await app.gql(KEY_FACTS, { key: admin.key, variables: { id: member.id } })).body.data!.user;
    expect(facts.accessKeyInfo.leakReportLocation).toBe(shown);
    const events = await leakEvents(app, { admin, action: 'ACCESS_KEY_LEAK_REPORTED', target: member.id });
    expect(events.map((event: any) => event.location)).toEqual([shown]);
    const rows: Array<{ row: string }> = await app.dataSource.query(
      `SELECT row_to_json(e)::text AS row FROM audit_events e WHERE target_user_id = $1
        UNION ALL SELECT row_to_json(k)::text FROM access_keys k WHERE user_id = $1`,
      [member.id],
    );
    expect(rows.length).toBeGreaterThan(1);
    for (const { row } of rows) {
      for (const secret of [member.key, admin.key, session]) expect(row).not.toContain(secret.slice(4));
    }
  });

  it('keeps a location of exactly 2,000 characters as it was given', async () => {
    const member = await createUser(app, admin);
    const location = `https://chat.example/${'x'.repeat(2000 - 'https://chat.example/'.length)}`;
    const response = await app.gql(REPORT, { key: admin.key, variables: { key: member.key, location } });
    expect(response.body.data).toEqual({ reportLeakedAccessKey: { revoked: true, user: { id: member.id } } });
    const facts = (await app.gql(KEY_FACTS, { key: admin.key, variables: { id: member.id } })).body.data!.user;
    expect(facts.accessKeyInfo.leakReportLocation).toBe(location);
  });

  it("an admin who reports their own key: the request's later acts are refused, and the key works no more", async () => {
    const reporter = await createUser(app, admin, { role: Role.ADMIN });
    const victim = await createUser(app, admin);
    const response = await app.gql(
      `mutation ($key: String!, $id: ID!) {
        report: reportLeakedAccessKey(key: $key, location: "my own screen share") { revoked user { id } }
        after: regenerateAccessKey(userId: $id) { accessKey }
      }`,
      { key: reporter.key, variables: { key: reporter.key, id: victim.id } },
    );
    // Both fields are non-null, so the refusal of the second empties `data`; the report itself committed.
    expect(response.body.data).toBeNull();
    expect(response.body.errors).toEqual([
      expect.objectContaining({ path: ['after'], extensions: expect.objectContaining({ code: 'UNAUTHENTICATED' }) }),
    ]);
    expect((await app.gql(ME, { key: victim.key })).status).toBe(200);
    expect((await app.gql(ME, { key: reporter.key })).status).toBe(401);
    const [{ n }] = await app.dataSource.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'ACCESS_KEY_LEAK_REPORTED' AND actor_user_id = $1 AND target_user_id = $1`,
      [reporter.id],
    );
    expect(n).toBe(1);
  });

  it('refuses a string that is not a key, and an empty location, as BAD_USER_INPUT', async () => {
    const member = await createUser(app, admin);
    const notAKey = await app.gql(REPORT, {
      key: admin.key,
      variables: { key: member.key.slice(0, -1), location: 'x' },
    });
    expect(notAKey.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'key' });
    const noLocation = await app.gql(REPORT, { key: admin.key, variables: { key: member.key, location: '  ' } });
    expect(noLocation.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'location' });
    expect((await app.gql(ME, { key: member.key })).status).toBe(200);
  });
});
