import { subject } from '@casl/ability';

import { defineAbilityFor, scopeOf } from '../../src/authorization/abilities';
import { Role } from '../../src/users/user.entity';
import { principal, user } from '../factories/principals';

describe('abilities', () => {
  it('scopes reads by organization for admins and managers, and to oneself for members', () => {
    expect(scopeOf(defineAbilityFor(principal(Role.ADMIN)), 'read', 'User')).toEqual([{ organizationId: 'org1' }]);
    expect(scopeOf(defineAbilityFor(principal(Role.MANAGER)), 'read', 'User')).toEqual([{ organizationId: 'org1' }]);
    expect(scopeOf(defineAbilityFor(principal(Role.MEMBER)), 'read', 'User')).toEqual([
      { id: 'u1', organizationId: 'org1' },
    ]);
  });

  it('lets only admins read accessKey, and only in their organization', () => {
    const same = user({});
    const other = user({ organizationId: 'org2' });
    expect(defineAbilityFor(principal(Role.ADMIN)).can('read', same, 'accessKey')).toBe(true);
    expect(defineAbilityFor(principal(Role.ADMIN)).can('read', other, 'accessKey')).toBe(false);
    expect(defineAbilityFor(principal(Role.MANAGER)).can('read', same, 'accessKey')).toBe(false);
    expect(defineAbilityFor(principal(Role.MANAGER)).can('read', same, 'email')).toBe(true);
    expect(defineAbilityFor(principal(Role.MEMBER)).can('read', user({ id: 'u1' }), 'accessKey')).toBe(false);
  });

  it('lets everyone change their own name but only admins other fields or users', () => {
    const self = user({ id: 'u1' });
    for (const role of [Role.MANAGER, Role.MEMBER]) {
      const ability = defineAbilityFor(principal(role));
      expect(ability.can('update', self, 'name')).toBe(true);
      expect(ability.can('update', self, 'email')).toBe(false);
      expect(ability.can('update', user({}), 'name')).toBe(false);
      expect(ability.can('create', subject('User', { organizationId: 'org1' }))).toBe(false);
    }
    expect(defineAbilityFor(principal(Role.ADMIN)).can('update', user({}), 'email')).toBe(true);
    expect(defineAbilityFor(principal(Role.ADMIN)).can('regenerateAccessKey', user({ organizationId: 'org2' }))).toBe(
      false,
    );
  });

  it('throws for an unknown role instead of granting anything', () => {
    expect(() => defineAbilityFor(principal('OWNER' as Role))).toThrow(/No abilities/);
  });
});
