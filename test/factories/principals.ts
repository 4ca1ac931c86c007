import type { Principal } from '../../src/authentication/principal';
import { Role, User } from '../../src/users/user.entity';

/** A key-authenticated caller `u1` of organization `org1` with `role`: what abilities are defined for. */
export function principal(role: Role): Principal {
  return {
    kind: 'ACCESS_KEY',
    userId: 'u1',
    organizationId: 'org1',
    role,
    user: Object.assign(new User(), { id: 'u1' }),
  };
}

/** A User entity (a CASL subject): `u2`, a MEMBER of `org1`, with `props` over that. */
export function user(props: Partial<User>): User {
  return Object.assign(new User(), { id: 'u2', organizationId: 'org1', role: Role.MEMBER }, props);
}
