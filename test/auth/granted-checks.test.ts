import { defineAbilityFor } from '../../src/authorization/abilities';
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
});
