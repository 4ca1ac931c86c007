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
  it('canEach answers as can does for rules on any action or subject, field patterns, inverted and unconditioned rules', () => {
    const built = (define: (builder: AbilityBuilder<AppAbility>) => void): AppAbility => {
      const builder = new AbilityBuilder<AppAbility>(createMongoAbility);
      define(builder);
      return builder.build();
    };
    const abilities = [
      // `manage` on `all`, then a field pattern taken away from one organization.
      built(({ can, cannot }) => {
        can('manage' as 'read', 'all' as 'User');
        cannot('read', 'User', ['access*'], { organizationId: 'org2' });
      }),
      // Everything refused first, then granted: the later rule wins (CASL's priority), whatever the object.
      built(({ can, cannot }) => {
        cannot('read', 'User', ['accessKey']);
        can('read', 'User', ['accessKey'], { organizationId: 'org1' });
      }),
      // Granted, then refused without conditions: refused for every user.
      built(({ can, cannot }) => {
        can('read', 'User', ['accessKey'], { organizationId: 'org1' });
        cannot('read', 'User', ['accessKey']);
      }),
      // A condition on a field some subjects lack, and one matching by $in.
      built(({ can }) => {
        can('read', 'User', ['accessKey'], { role: Role.MEMBER });
        can('read', 'User', ['accessKey'], { id: { $in: ['u7', 'u8'] } });
      }),
    ];
    const subjects = () => [
      user({}),
      user({ id: 'u7', organizationId: 'org2', role: Role.ADMIN }),
      user({ organizationId: 'org2' }),
      Object.assign(user({ id: 'u8' }), { role: undefined }),
      subject('User', { id: 'u9', organizationId: 'org2' }),
      subject('AuditEvent', { id: 'e1', organizationId: 'org1' }),
      user({ id: 'u10', role: Role.ADMIN }),
    ];
    for (const ability of abilities) {
      for (const field of ['accessKey', 'accessKeyInfo', undefined]) {
        const asked = subjects();
        const expected = asked.filter((s) => ability.can('read', s as Parameters<AppAbility['can']>[1], field));
        const each = new GrantedChecks();
        expect(each.canEach(ability, 'read', asked, field)).toEqual(expected);
        for (const s of asked) expect(each.has(ability, 'read', s, field)).toBe(expected.includes(s));
      }
    }
  });

  it("canEach's grants are never another ability's, even of the same principal's role and organization", () => {
    const first = defineAbilityFor(principal(Role.ADMIN));
    const second = defineAbilityFor(principal(Role.ADMIN));
    const grants = new GrantedChecks();
    const page = [user({}), user({ id: 'u3' })];
    expect(grants.canEach(first, 'read', page, 'accessKey')).toEqual(page);
    for (const row of page) expect(grants.has(second, 'read', row, 'accessKey')).toBe(false);
    // The other ability's grants replace the first's: the first is asked again, never answered from the second's.
    expect(grants.canEach(second, 'read', page.slice(0, 1), 'accessKey')).toEqual(page.slice(0, 1));
    expect(grants.has(first, 'read', page[0], 'accessKey')).toBe(false);
    expect(grants.has(second, 'read', page[1], 'accessKey')).toBe(false);
    // A refused page records nothing, and leaves the earlier grants as they were.
    const manager = defineAbilityFor(principal(Role.MANAGER));
    expect(grants.canEach(manager, 'read', page, 'accessKey')).toEqual([]);
    expect(grants.has(second, 'read', page[0], 'accessKey')).toBe(true);
    expect(grants.has(manager, 'read', page[0], 'accessKey')).toBe(false);
  });
});
