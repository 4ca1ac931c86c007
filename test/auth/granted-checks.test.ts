import { AbilityBuilder, createMongoAbility, subject } from '@casl/ability';

import { type AppAbility, defineAbilityFor } from '../../src/authorization/abilities';
import { GrantedChecks } from '../../src/request/granted-checks';
import { Role } from '../../src/users/user.entity';
import { principal, user } from '../factories/principals';

describe('GrantedChecks (what a field guard may take as already decided)', () => {
  it('answers as CASL does, and remembers only grants, on that very object, rule and ability', () => {
    const admin = defineAbilityFor(principal(Role.ADMIN));
    const grants = new GrantedChecks();
    const member = user({});
    const elsewhere = user({ id: 'u3', organizationId: 'org2' });

    expect(grants.can(admin, 'read', member, 'accessKey')).toBe(true);
    expect(grants.can(admin, 'read', elsewhere, 'accessKey')).toBe(false);

    expect(grants.has(admin, 'read', member, 'accessKey')).toBe(true);
    // A refusal is not remembered: asked again.
    expect(grants.has(admin, 'read', elsewhere, 'accessKey')).toBe(false);
    // An equal object, another field or action, another ability: not decided here.
    expect(grants.has(admin, 'read', user({}), 'accessKey')).toBe(false);
    expect(grants.has(admin, 'read', member, 'accessKeyInfo')).toBe(false);
    expect(grants.has(admin, 'update', member, 'accessKey')).toBe(false);
    expect(grants.has(defineAbilityFor(principal(Role.ADMIN)), 'read', member, 'accessKey')).toBe(false);
  });

  it('never grants what the ability refuses', () => {
    const manager = defineAbilityFor(principal(Role.MANAGER));
    const grants = new GrantedChecks();
    const member = user({});
    expect(grants.can(manager, 'read', member, 'accessKey')).toBe(false);
    expect(grants.has(manager, 'read', member, 'accessKey')).toBe(false);
  });

  it('canEach answers each subject as can does, in order, and remembers the same grants', () => {
    const { can, cannot, build } = new AbilityBuilder<AppAbility>(createMongoAbility);
    can('read', 'User', ['accessKey'], { organizationId: 'org1' });
    cannot('read', 'User', ['accessKey'], { id: 'u4' });
    const abilities = [
      ...[Role.ADMIN, Role.MANAGER, Role.MEMBER].map((role) => defineAbilityFor(principal(role))),
      build(),
    ];
    const subjects = () => [
      user({}),
      user({ id: 'u1' }),
      user({ id: 'u3', organizationId: 'org2' }),
      user({ id: 'u4' }),
      // Another subject type between the users, and a plain object made a User by CASL's subject().
      subject('Organization', { id: 'org1', organizationId: 'org1' }),
      subject('User', { id: 'u5', organizationId: 'org1' }),
      user({ id: 'u6', organizationId: 'org2' }),
    ];
    for (const ability of abilities) {
      for (const field of ['accessKey', 'name', undefined]) {
        const one = new GrantedChecks();
        const each = new GrantedChecks();
        const asked = subjects();
        const expected = asked.filter((s) => one.can(ability, 'read', s as object, field));
        expect(each.canEach(ability, 'read', asked, field)).toEqual(expected);
        for (const s of asked) {
          expect(each.has(ability, 'read', s, field)).toBe(expected.includes(s));
        }
      }
    }
  });
});
