import { Role } from '../../src/users/user.entity';
import {
  createOrganization,
  createUser,
  login,
  TEST_PASSWORD,
  type TestUser,
  uniqueEmail,
} from '../factories/organizations';
import { auditRowIds, type GraphQLResponse, startTestApp, type TestApp } from '../helpers/test-app';

type Caller = 'ADMIN' | 'MANAGER' | 'MEMBER' | 'ANONYMOUS' | 'OTHER_ORG_ADMIN';
type Outcome = 'OK' | 'UNAUTHENTICATED' | 'FORBIDDEN' | 'NOT_FOUND';

interface World {
  admin: TestUser;
  manager: TestUser;
  member: TestUser;
  otherAdmin: TestUser;
  /** A MEMBER of the first organization that the operation acts on; fresh for every cell. */
  target: TestUser;
  caller: TestUser | null;
}

interface Operation {
  document: string;
  variables?: (world: World) => Record<string, unknown>;
  /** Extra checks for an OK cell. */
  expectOk?: (data: Record<string, any>, world: World, app: TestApp) => void | Promise<void>;
  /** For a forbidden field: the rest of the answer still arrives. */
  expectPartial?: (data: Record<string, any>, world: World) => void;
  /** Run before the request, after the target was made. */
  prepare?: (world: World, app: TestApp) => Promise<void>;
}

const OPERATIONS: Record<string, Operation> = {
  me: {
    document: '{ me { id role } }',
    expectOk: (data, w) => expect(data.me.id).toBe(w.caller!.id),
  },
  'me { accessKey } (own key)': {
    document: '{ me { id accessKey } }',
    expectOk: (data, w) => expect(data.me.accessKey).toBe(w.caller!.key),
    expectPartial: (data, w) => expect(data.me).toEqual({ id: w.caller!.id, accessKey: null }),
  },
  organization: {
    document: '{ organization { id name } }',
    expectOk: (data, w) => expect(data.organization.id).toBe(w.caller!.organizationId),
  },
  'user(id)': {
    document: 'query ($id: ID!) { user(id: $id) { id email role isActive organization { id } } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data, w) =>
      expect(data.user).toMatchObject({ id: w.target.id, organization: { id: w.target.organizationId } }),
  },
  'user(id) { accessKey }': {
    document: 'query ($id: ID!) { user(id: $id) { id name accessKey } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data, w) => expect(data.user.accessKey).toBe(w.target.key),
    expectPartial: (data, w) => expect(data.user).toEqual({ id: w.target.id, name: w.target.name, accessKey: null }),
  },
  'user(id) { accessKeyInfo }': {
    document: 'query ($id: ID!) { user(id: $id) { id accessKeyInfo { hint createdAt } } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data, w) => expect(data.user.accessKeyInfo.hint).toBe(`cak_...${w.target.key.slice(-4)}`),
    expectPartial: (data, w) => expect(data.user).toEqual({ id: w.target.id, accessKeyInfo: null }),
  },
  users: {
    document: '{ users(first: 500) { totalCount edges { node { id organization { id } } } } }',
    expectOk: (data, w) => {
      const ids = data.users.edges.map((edge: any) => edge.node.id);
      expect(data.users.totalCount).toBe(ids.length);
      for (const edge of data.users.edges) expect(edge.node.organization.id).toBe(w.caller!.organizationId);
      if (w.caller!.role === Role.MEMBER) expect(ids).toEqual([w.caller!.id]);
      else if (w.caller!.organizationId === w.target.organizationId) expect(ids).toContain(w.target.id);
      else expect(ids).not.toContain(w.target.id);
    },
  },
  'users { accessKey }': {
    document: '{ users(first: 500) { edges { node { id accessKey } } } }',
    expectOk: (data, w) => {
      const target = data.users.edges.find((edge: any) => edge.node.id === w.target.id);
      if (w.caller!.organizationId === w.target.organizationId) expect(target.node.accessKey).toBe(w.target.key);
      else expect(target).toBeUndefined();
    },
    expectPartial: (data) => {
      expect(data.users.edges.length).toBeGreaterThan(0);
      for (const edge of data.users.edges) expect(edge.node.accessKey).toBeNull();
    },
  },
  createUser: {
    document: 'mutation ($input: CreateUserInput!) { createUser(input: $input) { id organization { id } } }',
    variables: () => ({ input: { email: uniqueEmail('new'), name: 'New Person', role: 'MEMBER' } }),
    expectOk: (data, w) => expect(data.createUser.organization.id).toBe(w.caller!.organizationId),
  },
  'updateUser(target, name)': {
    document: 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "Renamed" }) { id name } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data) => expect(data.updateUser.name).toBe('Renamed'),
  },
  'updateUser(self, name)': {
    document: 'mutation ($id: ID!) { updateUser(id: $id, input: { name: "My New Name" }) { id name } }',
    variables: (w) => ({ id: w.caller?.id ?? w.target.id }),
    expectOk: (data) => expect(data.updateUser.name).toBe('My New Name'),
  },
  'updateUser(self, email)': {
    document: 'mutation ($id: ID!, $email: String!) { updateUser(id: $id, input: { email: $email }) { id email } }',
    variables: (w) => ({ id: w.caller?.id ?? w.target.id, email: uniqueEmail('changed') }),
  },
  setUserRole: {
    document: 'mutation ($id: ID!) { setUserRole(id: $id, role: MANAGER) { id role } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data) => expect(data.setUserRole.role).toBe('MANAGER'),
  },
  deactivateUser: {
    document: 'mutation ($id: ID!) { deactivateUser(id: $id) { id isActive } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data) => expect(data.deactivateUser.isActive).toBe(false),
  },
  reactivateUser: {
    document: 'mutation ($id: ID!) { reactivateUser(id: $id) { id isActive } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data) => expect(data.reactivateUser.isActive).toBe(true),
  },
  auditEvents: {
    document: '{ auditEvents(first: 500) { edges { node { id action actor { id } target { id } } } } }',
    // The newest events of the service include one of the other organization's, so a leak would be on this page.
    prepare: async (w, app) => {
      const otherOrganization = w.caller?.organizationId === w.otherAdmin.organizationId ? w.admin : w.otherAdmin;
      await createUser(app, otherOrganization, { role: Role.MEMBER });
    },
    expectOk: async (data, w, app) => {
      const events = data.auditEvents.edges.map(({ node }: any) => node);
      expect(events.length).toBeGreaterThan(0);
      // Every event row is the caller's organization's (actors and targets can be null or invisible: not enough).
      // Ids are opaque tokens bound to their event's organization: each opens for the caller's (auditRowIds).
      const rowIds = auditRowIds(
        app,
        events.map((event: any) => event.id),
        w.caller!.organizationId,
      );
      expect(rowIds).not.toContain(null);
      const eventOrgs = await app.dataSource.query(
        `SELECT DISTINCT organization_id FROM audit_events WHERE id = ANY($1::bigint[])`,
        [rowIds],
      );
      expect(eventOrgs).toEqual([{ organization_id: w.caller!.organizationId }]);
      const userIds = events.flatMap((event: any) => [event.actor?.id, event.target?.id]).filter(Boolean);
      const orgs = await app.dataSource.query(`SELECT DISTINCT organization_id FROM users WHERE id = ANY($1)`, [
        userIds,
      ]);
      expect(orgs).toEqual([{ organization_id: w.caller!.organizationId }]);
    },
  },
  regenerateAccessKey: {
    document: 'mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey user { id } } }',
    variables: (w) => ({ id: w.target.id }),
    expectOk: (data, w) => {
      expect(data.regenerateAccessKey.user.id).toBe(w.target.id);
      expect(data.regenerateAccessKey.accessKey).not.toBe(w.target.key);
    },
  },
};

// prettier-ignore
const MATRIX: Record<keyof typeof OPERATIONS, Record<Caller, Outcome>> = {
  //                              ADMIN        MANAGER         MEMBER          ANONYMOUS                  OTHER_ORG_ADMIN
  'me':                          { ADMIN: 'OK', MANAGER: 'OK',        MEMBER: 'OK',        ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'me { accessKey } (own key)':  { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'FORBIDDEN', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'organization':                { ADMIN: 'OK', MANAGER: 'OK',        MEMBER: 'OK',        ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'user(id)':                    { ADMIN: 'OK', MANAGER: 'OK',        MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'user(id) { accessKey }':      { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'user(id) { accessKeyInfo }':  { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'users':                       { ADMIN: 'OK', MANAGER: 'OK',        MEMBER: 'OK',        ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'users { accessKey }':         { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'FORBIDDEN', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'createUser':                  { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'FORBIDDEN', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'updateUser(target, name)':    { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'updateUser(self, name)':      { ADMIN: 'OK', MANAGER: 'OK',        MEMBER: 'OK',        ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'updateUser(self, email)':     { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'FORBIDDEN', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'setUserRole':                 { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'deactivateUser':              { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'reactivateUser':              { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
  'auditEvents':                 { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'FORBIDDEN', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'OK' },
  'regenerateAccessKey':         { ADMIN: 'OK', MANAGER: 'FORBIDDEN', MEMBER: 'NOT_FOUND', ANONYMOUS: 'UNAUTHENTICATED', OTHER_ORG_ADMIN: 'NOT_FOUND' },
};

const CALLERS: Caller[] = ['ADMIN', 'MANAGER', 'MEMBER', 'ANONYMOUS', 'OTHER_ORG_ADMIN'];
const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/g;

describe.each(['access key', 'session token'] as const)(
  'role matrix: every caller against every operation (%s)',
  (credential) => {
    let app: TestApp;
    let world: Omit<World, 'target' | 'caller'>;
    const tokens = new Map<string, string>();

    beforeAll(async () => {
      app = await startTestApp();
      const admin = await createOrganization(app, 'First Org', TEST_PASSWORD);
      const otherAdmin = await createOrganization(app, 'Second Org', TEST_PASSWORD);
      world = {
        admin,
        manager: await createUser(app, admin, { role: Role.MANAGER, password: TEST_PASSWORD }),
        member: await createUser(app, admin, { role: Role.MEMBER, password: TEST_PASSWORD }),
        otherAdmin,
      };
      if (credential === 'session token') {
        for (const user of [world.admin, world.manager, world.member, world.otherAdmin])
          tokens.set(user.id, await login(app, user));
      }
      // The other organization has users too, so a leak across organizations would show.
      await createUser(app, otherAdmin, { role: Role.MEMBER });
    });
    afterAll(() => app.close());

    function callerUser(caller: Caller): TestUser | null {
      return {
        ADMIN: world.admin,
        MANAGER: world.manager,
        MEMBER: world.member,
        OTHER_ORG_ADMIN: world.otherAdmin,
        ANONYMOUS: null,
      }[caller];
    }

    const cells = Object.entries(MATRIX).flatMap(([operation, row]) =>
      CALLERS.map((caller) => [operation, caller, row[caller]] as const),
    );

    it.each(cells)('%s as %s: %s', async (operationName, caller, outcome) => {
      const operation = OPERATIONS[operationName];
      const target = await createUser(app, world.admin, { role: Role.MEMBER });
      if (operationName === 'reactivateUser') {
        await app.gql('mutation ($id: ID!) { deactivateUser(id: $id) { id } }', {
          key: world.admin.key,
          variables: { id: target.id },
        });
      }
      const w: World = { ...world, target, caller: callerUser(caller) };
      await operation.prepare?.(w, app);
      const response: GraphQLResponse = await app.gql(operation.document, {
        ...(w.caller && credential === 'session token'
          ? { headers: { authorization: `Bearer ${tokens.get(w.caller.id)}` } }
          : { key: w.caller?.key }),
        variables: operation.variables?.(w),
      });

      expect(response.status).toBe(200);
      const data = response.body.data ?? {};
      if (outcome === 'OK') {
        expect(response.body.errors).toBeUndefined();
        await operation.expectOk?.(data, w, app);
      } else {
        expect(response.body.errors?.map((error) => error.extensions?.code)).toContain(outcome);
        if (outcome === 'FORBIDDEN' && operation.expectPartial) operation.expectPartial(data, w);
      }

      // No cell may reveal a key it shouldn't: only an admin of the key owner's organization sees keys.
      const revealed = JSON.stringify(response.body).match(KEY_PATTERN) ?? [];
      if (revealed.length > 0) {
        expect(caller === 'ADMIN' || caller === 'OTHER_ORG_ADMIN').toBe(true);
        const ownerOrgs = await app.dataSource.query(
          `SELECT DISTINCT u.organization_id FROM access_keys k JOIN users u ON u.id = k.user_id WHERE k.key_digest = ANY($1)`,
          [revealed.map((key) => app.keyCrypto.digest(key))],
        );
        expect(ownerOrgs).toEqual([{ organization_id: w.caller!.organizationId }]);
      }
    });
  },
);
