import { type GraphQLField, type GraphQLSchema, isObjectType } from 'graphql';

import { ACCESS_KEY_FIELDS, defineAbilityFor, PROFILE_FIELDS } from '../../src/authorization/abilities';
import { ForbiddenError, UnauthenticatedError } from '../../src/errors';
import { AUTHORIZATION_EXTENSION, type DeclaredRule } from '../../src/request/can';
import { buildAppSchema } from '../../src/server/schema';
import { Role, User } from '../../src/users/user.entity';
import { principal } from '../factories/principals';

function ruleOf(field: GraphQLField<unknown, unknown>): DeclaredRule | undefined {
  return field.extensions?.[AUTHORIZATION_EXTENSION] as DeclaredRule | undefined;
}

describe('who may call what is declared where each field is', () => {
  let schema: GraphQLSchema;
  beforeAll(async () => {
    schema = await buildAppSchema();
  });

  it('declares a rule (or Public) on every query and mutation', () => {
    for (const type of [schema.getQueryType()!, schema.getMutationType()!]) {
      const undeclared = Object.values(type.getFields()).filter((field) => !ruleOf(field));
      expect(undeclared.map((field) => `${type.name}.${field.name}`)).toEqual([]);
    }
  });

  it('declares only login public', () => {
    const fields = [schema.getQueryType()!, schema.getMutationType()!].flatMap((type) =>
      Object.values(type.getFields()),
    );
    const open = fields.filter((field) => ruleOf(field) && 'public' in ruleOf(field)!);
    expect(open.map((field) => field.name)).toEqual(['login']);
  });

  it('names every field of User in abilities.ts: the profile fields, or a rule on the field naming it', () => {
    const user = schema.getType('User');
    if (!isObjectType(user)) throw new Error('User is not an object type');
    for (const field of Object.values(user.getFields())) {
      const rule = ruleOf(field);
      if (PROFILE_FIELDS.includes(field.name)) continue;
      expect({ field: field.name, rule }).toEqual({
        field: field.name,
        rule: expect.objectContaining({ field: field.name }),
      });
    }
  });

  it('checks each key field rule before its resolver runs: a caller it refuses never reaches it', () => {
    const user = schema.getType('User');
    if (!isObjectType(user)) throw new Error('User is not an object type');
    const target = Object.assign(new User(), { id: 'u2', organizationId: 'org1', role: Role.MEMBER });
    for (const name of ACCESS_KEY_FIELDS) {
      const resolve = user.getFields()[name].resolve!;
      // The context has no loaders: a resolver that ran would fail with a TypeError, not these errors.
      for (const role of [Role.MANAGER, Role.MEMBER]) {
        const actor = { principal: principal(role), ability: defineAbilityFor(principal(role)) };
        expect(() => resolve(target, {}, { actor }, {} as never)).toThrow(ForbiddenError);
      }
      expect(() => resolve(target, {}, { actor: null }, {} as never)).toThrow(UnauthenticatedError);
      const admin = { principal: principal(Role.ADMIN), ability: defineAbilityFor(principal(Role.ADMIN)) };
      const otherOrganization = Object.assign(new User(), { id: 'u3', organizationId: 'org2' });
      expect(() => resolve(otherOrganization, {}, { actor: admin }, {} as never)).toThrow(ForbiddenError);
    }
  });

  it('guards each key field on the user it belongs to, by its own name', () => {
    const user = schema.getType('User');
    if (!isObjectType(user)) throw new Error('User is not an object type');
    for (const name of ACCESS_KEY_FIELDS) {
      expect(ruleOf(user.getFields()[name])).toEqual({ action: 'read', subject: 'User', field: name, on: 'parent' });
    }
  });
});

describe('abilities grant the key fields by name', () => {
  const sameOrganization = Object.assign(new User(), { id: 'u2', organizationId: 'org1', role: Role.MEMBER });

  it('gives ADMIN the key fields because a rule names them, not every field of a user', () => {
    const admin = defineAbilityFor(principal(Role.ADMIN));
    for (const field of ACCESS_KEY_FIELDS) expect(admin.can('read', sameOrganization, field)).toBe(true);
    expect(admin.can('read', sameOrganization, 'passwordHash')).toBe(false);
    expect(admin.can('update', sameOrganization, 'role')).toBe(false);
    const fieldless = admin.rulesFor('read', 'User').filter((rule) => !rule.fields);
    expect(fieldless).toEqual([]);
  });

  it('gives the key fields to no other role', () => {
    for (const role of [Role.MANAGER, Role.MEMBER]) {
      const ability = defineAbilityFor(principal(role));
      for (const field of ACCESS_KEY_FIELDS) {
        expect(ability.can('read', sameOrganization, field)).toBe(false);
        expect(ability.can('read', Object.assign(new User(), { id: 'u1', organizationId: 'org1' }), field)).toBe(false);
      }
    }
  });
});
