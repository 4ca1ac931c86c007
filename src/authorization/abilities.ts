import {
  AbilityBuilder,
  createMongoAbility,
  type ForcedSubject,
  type MongoAbility,
  type MongoQuery,
} from '@casl/ability';

import type { Principal } from '../authentication/principal';
import type { Organization } from '../organizations/organization.entity';
import { Role, type User } from '../users/user.entity';

export type Action =
  | 'read'
  | 'create'
  | 'update'
  | 'setRole'
  | 'deactivate'
  | 'reactivate'
  | 'regenerateAccessKey'
  | 'changePassword'
  | 'setAccessKeyPolicy';
export type SubjectType = 'User' | 'Organization' | 'AuditEvent';
type Subject = SubjectType | User | Organization | ({ organizationId: string } & ForcedSubject<SubjectType>);
export type AppAbility = MongoAbility<[Action, Subject], MongoQuery>;

/** Fields of a user that anyone who may see the user may read (the User type's plain fields). */
export const PROFILE_FIELDS = ['id', 'email', 'name', 'role', 'isActive', 'organization', 'createdAt', 'updatedAt'];

/**
 * The key fields of a user (`User.accessKey`, `User.accessKeyInfo`): granted by name, to ADMIN only
 * (README "Who may do what"). A field not granted to a role is FORBIDDEN for it, so a field added to the
 * User type is hidden until a rule here names it.
 */
export const ACCESS_KEY_FIELDS = ['accessKey', 'accessKeyInfo'];

/** The fields of a user an ADMIN may change with updateUser (everyone else: their own `name`). */
export const ADMIN_UPDATABLE_FIELDS = ['name', 'email'];

/**
 * Every role's rules, in one place. Each rule is conditioned on the caller's organization, so another
 * organization's rows never match: isolation is a rule, not a habit of each query.
 */
export function defineAbilityFor(principal: Principal): AppAbility {
  const { can, build } = new AbilityBuilder<AppAbility>(createMongoAbility);
  const { organizationId, userId } = principal;
  const self = { id: userId, organizationId };

  can('read', 'Organization', { id: organizationId });
  can('update', 'User', ['name'], self);
  can('changePassword', 'User', self);

  switch (principal.role) {
    case Role.ADMIN:
      // One read rule (list scoping turns each rule into an OR branch): the profile and, by name, the key.
      can('read', 'User', [...PROFILE_FIELDS, ...ACCESS_KEY_FIELDS], { organizationId });
      can('update', 'User', ADMIN_UPDATABLE_FIELDS, { organizationId });
      can(['create', 'setRole', 'deactivate', 'reactivate'], 'User', { organizationId });
      // The key acts: regenerate, and report a leaked key (which regenerates it).
      can('regenerateAccessKey', 'User', { organizationId });
      can('read', 'AuditEvent', { organizationId });
      can('setAccessKeyPolicy', 'Organization', { id: organizationId });
      break;
    case Role.MANAGER:
      can('read', 'User', PROFILE_FIELDS, { organizationId });
      break;
    case Role.MEMBER:
      can('read', 'User', PROFILE_FIELDS, self);
      break;
    default:
      throw new Error(`No abilities are defined for role ${String(principal.role)}`);
  }
  // Entities are checked as they are (CASL reads the class name); plain objects go through CASL's subject().
  return build();
}

export type ScopeCondition = Readonly<Record<string, string | number | boolean>>;

/**
 * The rows `action` may touch, as a list of equality conditions to OR together (an empty list: none).
 * Services turn it into SQL, so list queries are scoped by the same rules as single objects.
 */
export function scopeOf(ability: AppAbility, action: Action, type: SubjectType): ScopeCondition[] {
  return ability.rulesFor(action, type).map((rule) => {
    if (rule.inverted) throw new Error('Inverted rules cannot be turned into a query scope');
    const conditions = (rule.conditions ?? {}) as Record<string, unknown>;
    for (const [field, value] of Object.entries(conditions)) {
      if (typeof value === 'object' && value !== null) {
        throw new Error(`Only equality conditions can scope a query (${field})`);
      }
    }
    return conditions as ScopeCondition;
  });
}

const abilities = new WeakMap<Principal, AppAbility>();

/** The principal's ability, built once per principal: cached principals are shared by many requests. */
export function abilityFor(principal: Principal): AppAbility {
  let ability = abilities.get(principal);
  if (!ability) {
    ability = defineAbilityFor(principal);
    abilities.set(principal, ability);
  }
  return ability;
}
