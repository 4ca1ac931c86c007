import type { Principal } from '../../src/authentication/principal';
import { defineAbilityFor } from '../../src/authorization/abilities';
import { GrantedChecks } from '../../src/request/granted-checks';
import { Role, User } from '../../src/users/user.entity';

function principal(role: Role): Principal {
  return {
    kind: 'ACCESS_KEY',
    userId: 'u1',
    organizationId: 'org1',
    role,
    user: Object.assign(new User(), { id: 'u1' }),
  };
}

const user = (props: Partial<User>): User =>
  Object.assign(new User(), { id: 'u2', organizationId: 'org1', role: Role.MEMBER }, props);

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
});
