import { subject } from '@casl/ability';
import { createMethodMiddlewareDecorator, Extensions } from 'type-graphql';

import type { Action, SubjectType } from '../authorization/abilities';
import { ForbiddenError, UnauthenticatedError } from '../errors';
import type { RequestContext } from './context';

/**
 * Where a declared rule is applied:
 * - `parent`: on the object the field belongs to, here, before the field resolves (a refusal is FORBIDDEN on
 *   that field only; the rest of the answer arrives);
 * - `organization`: on the caller's organization, here, before the resolver runs (FORBIDDEN);
 * - `{ arg }`: on the row named by that argument, by the service: a read when it reads the row
 *   (UserService.get), a write inside the act's transaction (UserService.change, Authority.confirm);
 *   NOT_FOUND when the row is not visible, FORBIDDEN when it is;
 * - `caller`: on the caller's own row, by the service inside the act;
 * - `list`: on every row of a list, as SQL (abilities.ts scopeOf): rows outside it do not exist for the caller;
 * - `with-parent`: a profile field (abilities.ts PROFILE_FIELDS), readable by whoever was given its parent
 *   (the parent's own rule was applied where it was read; login's payload carries the person signing in).
 */
export type RuleTarget = 'parent' | 'with-parent' | 'organization' | 'caller' | 'list' | { arg: string };

/** A field's rule as declared, kept in the GraphQL field's extensions (`authorization`) for tests and tools. */
export type DeclaredRule = { public: true } | { action: Action; subject: SubjectType; field?: string; on: RuleTarget };

/** The GraphQL field extension that carries a field's declared rule. */
export const AUTHORIZATION_EXTENSION = 'authorization';

/**
 * Who may call this query, mutation or field: the caller's abilities (src/authorization/abilities.ts, the
 * only place role rules live) must allow `action` on `subjectType` (and on `options.field`, if given), applied
 * where `options.on` says. `parent` and `organization` rules are checked by this decorator, before the
 * resolver: UnauthenticatedError without credentials, ForbiddenError (`options.message`, or the generic one)
 * when not allowed. The others are declared here and enforced by the service (UserService.get and `change`,
 * the SQL scope, Authority.confirm at the moment of a write), so that a row's existence is not revealed and a
 * revoked authority cannot act.
 * @example `@Can('read', 'User', { field: 'accessKey', on: 'parent' })`
 */
export function Can(
  action: Action,
  subjectType: SubjectType,
  options: { on: RuleTarget; field?: string; message?: string },
): MethodDecorator {
  const { on, field, message } = options;
  const rule: DeclaredRule = { action, subject: subjectType, on, ...(field ? { field } : {}) };
  // Only the rules checked here cost a middleware; the others are enforced by the service, and their resolvers
  // take the caller through @CurrentActor (UNAUTHENTICATED without credentials), as before.
  const checkedHere = on === 'parent' || on === 'organization';
  const guard = createMethodMiddlewareDecorator<RequestContext>(({ context, root }, next) => {
    const actor = context.actor;
    if (!actor) throw new UnauthenticatedError();
    const { organizationId } = actor.principal;
    // The caller's organization as a subject: itself for 'Organization' (whose rules match on id).
    const ofOrganization = subjectType === 'Organization' ? { id: organizationId, organizationId } : { organizationId };
    const target = on === 'parent' ? root : subject(subjectType, ofOrganization);
    if (!actor.ability.can(action, target, field)) throw new ForbiddenError(message);
    return next();
  });
  return declared(rule, checkedHere ? guard : undefined);
}

/** Open to anyone, signed in or not (login): says so where it is declared, so no field is public by omission. */
export function Public(): MethodDecorator {
  return declared({ public: true }, undefined);
}

function declared(rule: DeclaredRule, guard: MethodDecorator | undefined): MethodDecorator {
  const extension = Extensions({ [AUTHORIZATION_EXTENSION]: rule });
  return (target, propertyKey, descriptor) => {
    extension(target, propertyKey, descriptor);
    guard?.(target, propertyKey, descriptor);
  };
}
