import fc from 'fast-check';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, login, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/**
 * Property: whatever the document (aliases, fragments, inline fragments, lists, single users, nested
 * organization) and whoever asks (each role of each organization, anonymous; by key or session), a key
 * appears in a response only for an ADMIN of the key owner's organization.
 */
const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/g;

describe('property: keys are only ever revealed to admins of the owner organization', () => {
  let app: TestApp;
  const people: TestUser[] = [];
  const sessions = new Map<string, string>();
  const owners = new Map<string, TestUser>();

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_FAILURE_LIMIT: '100000' } });
    for (const name of ['North Org', 'South Org']) {
      const admin = await createOrganization(app, name, TEST_PASSWORD);
      people.push(admin);
      people.push(await createUser(app, admin, { role: Role.MANAGER, password: TEST_PASSWORD }));
      people.push(await createUser(app, admin, { role: Role.MEMBER, password: TEST_PASSWORD }));
    }
    for (const person of people) {
      sessions.set(person.id, await login(app, person));
      owners.set(person.key, person);
    }
  }, 120_000);
  afterAll(() => app.close());

  const userField = fc.constantFrom(
    'id',
    'email',
    'role',
    'accessKey',
    'accessKeyInfo { hint }',
    'organization { id name }',
    'isActive',
  );
  const userSelection = fc
    .tuple(
      fc.uniqueArray(userField, { minLength: 1, maxLength: 4 }),
      fc.boolean(), // a named fragment with the key
      fc.boolean(), // an inline fragment with the key
      fc.option(fc.constantFrom('k1', 'secret', 'x'), { nil: undefined }), // an alias on accessKey
    )
    .map(([fields, named, inline, alias]) => ({
      text: [
        ...fields,
        ...(named ? ['...KeyFields'] : []),
        ...(inline ? ['... on User { accessKey }'] : []),
        ...(alias ? [`${alias}: accessKey`] : []),
      ].join(' '),
      usesFragment: named,
    }));
  const root = fc
    .tuple(
      fc.constantFrom('me', 'user', 'users'),
      userSelection,
      fc.nat({ max: 5 }), // one of the six people
      fc.integer({ min: 1, max: 20 }),
      fc.option(fc.constantFrom('a', 'b', 'c'), { nil: undefined }),
    )
    .map(([kind, selection, target, first, alias]) => {
      const prefix = alias ? `${alias}_${kind}: ` : '';
      const text =
        kind === 'me'
          ? `${prefix}me { ${selection.text} }`
          : kind === 'user'
            ? `${prefix}user(id: "${people[target].id}") { ${selection.text} }`
            : `${prefix}users(first: ${first}) { edges { node { ${selection.text} } } }`;
      return { text, usesFragment: selection.usesFragment, key: `${alias ?? ''}_${kind}` };
    });
  const documentArb = fc.uniqueArray(root, { minLength: 1, maxLength: 3, selector: (r) => r.key }).map((roots) => {
    const fragment = roots.some((r) => r.usesFragment) ? ' fragment KeyFields on User { id accessKey }' : '';
    return `query { ${roots.map((r) => r.text).join(' ')} }${fragment}`;
  });
  const callerArb = fc.tuple(
    fc.option(fc.nat({ max: 5 }), { nil: undefined, freq: 6 }),
    fc.constantFrom('key', 'session'),
  );

  it('holds over 500 generated documents and callers', async () => {
    let revealed = 0;
    await fc.assert(
      fc.asyncProperty(documentArb, callerArb, async (document, [callerIndex, credential]) => {
        const caller = callerIndex === undefined ? null : people[callerIndex];
        const headers: Record<string, string> = {};
        if (caller && credential === 'key') headers['x-access-key'] = caller.key;
        if (caller && credential === 'session') headers.authorization = `Bearer ${sessions.get(caller.id)}`;
        const response = await app.gql(document, { headers });
        expect(response.status).toBeLessThan(500);
        expect(response.body.errors?.some((e) => e.extensions?.code === 'INTERNAL_SERVER_ERROR') ?? false).toBe(false);
        for (const key of JSON.stringify(response.body).match(KEY_PATTERN) ?? []) {
          revealed++;
          const owner = owners.get(key);
          expect(owner).toBeDefined();
          expect(caller?.role).toBe(Role.ADMIN);
          expect(caller?.organizationId).toBe(owner!.organizationId);
        }
      }),
      { numRuns: 500 },
    );
    // The property was not vacuous: admins did see keys along the way.
    expect(revealed).toBeGreaterThan(50);
  }, 180_000);
});
