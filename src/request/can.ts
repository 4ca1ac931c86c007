import { subject } from '@casl/ability';
import { defaultFieldResolver, type GraphQLFieldResolver, type GraphQLSchema, isObjectType } from 'graphql';
import { Extensions } from 'type-graphql';

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
/** The GraphQL field extension that carries the refusal message of a rule checked here (Can's `message`). */
const REFUSAL_MESSAGE_EXTENSION = 'authorizationRefusal';

/**
 * Who may call this query, mutation or field: the caller's abilities (src/authorization/abilities.ts, the
 * only place role rules live) must allow `action` on `subjectType` (and on `options.field`, if given), applied
 * where `options.on` says. `parent` and `organization` rules are checked before the resolver, by the check
 * enforceDeclaredRules puts in front of the field in the built schema: UnauthenticatedError without
 * credentials, ForbiddenError (`options.message`, or the generic one) when not allowed. The others are
 * declared here and enforced by the service (UserService.get and `change`, the SQL scope, Authority.confirm at
 * the moment of a write), so that a row's existence is not revealed and a revoked authority cannot act.
 * @example `@Can('read', 'User', { field: 'accessKey', on: 'parent' })`
 */
export function Can(
  action: Action,
  subjectType: SubjectType,
  options: { on: RuleTarget; field?: string; message?: string },
): MethodDecorator {
  const { on, field, message } = options;
  const rule: DeclaredRule = { action, subject: subjectType, on, ...(field ? { field } : {}) };
  return Extensions({ [AUTHORIZATION_EXTENSION]: rule, ...(message ? { [REFUSAL_MESSAGE_EXTENSION]: message } : {}) });
}

/** Open to anyone, signed in or not (login): says so where it is declared, so no field is public by omission. */
export function Public(): MethodDecorator {
  return Extensions({ [AUTHORIZATION_EXTENSION]: { public: true } satisfies DeclaredRule });
}

/**
 * Puts the check of each `parent` and `organization` rule declared with @Can in front of its field's resolver,
 * in place: the schema the service serves must come from here (server/schema.ts buildAppSchema). The check
 * is synchronous (a type-graphql middleware made two promises per field, on every row of a list), and throws
 * UnauthenticatedError without credentials, ForbiddenError when the caller's abilities refuse; the resolver
 * does not run then. Returns the schema.
 */
export function enforceDeclaredRules(schema: GraphQLSchema): GraphQLSchema {
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type)) continue;
    for (const field of Object.values(type.getFields())) {
      const rule = field.extensions?.[AUTHORIZATION_EXTENSION] as DeclaredRule | undefined;
      if (!rule || 'public' in rule || (rule.on !== 'parent' && rule.on !== 'organization')) continue;
      const message = field.extensions?.[REFUSAL_MESSAGE_EXTENSION] as string | undefined;
      field.resolve = guarded(rule, message, field.resolve ?? defaultFieldResolver);
    }
  }
  return schema;
}

function guarded(
  rule: Exclude<DeclaredRule, { public: true }>,
  message: string | undefined,
  resolve: GraphQLFieldResolver<unknown, RequestContext>,
): GraphQLFieldResolver<unknown, RequestContext> {
  const { action, subject: subjectType, field, on } = rule;
  return (root, args, context, info) => {
    const actor = context.actor;
    if (!actor) throw new UnauthenticatedError();
    let target: unknown = root;
    if (on === 'parent') {
      // The same question, already granted on this very object in this request (a page's key reveal): see
      // GrantedChecks.
      if (actor.grants?.has(actor.ability, action, root as object, field)) return resolve(root, args, context, info);
    } else {
      const { organizationId } = actor.principal;
      // The caller's organization as a subject: itself for 'Organization' (whose rules match on id).
      target = subject(
        subjectType,
        subjectType === 'Organization' ? { id: organizationId, organizationId } : { organizationId },
      );
    }
    if (!actor.ability.can(action, target as Parameters<typeof actor.ability.can>[1], field)) {
      throw new ForbiddenError(message);
    }
    return resolve(root, args, context, info);
  };
}
