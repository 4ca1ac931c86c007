import type { GraphQLSchema } from 'graphql';
import { isObjectType } from 'graphql';
import { Extensions } from 'type-graphql';

import type { RequestContext } from '../request/context';

/** The GraphQL field extension that carries a field's direct resolver (ResolvedBy). */
const DIRECT_RESOLVER_EXTENSION = 'directResolver';

/** A field's answer from its parent object and the request's context alone (no arguments, no resolver instance). */
export type DirectResolver<Root = never, Result = unknown> = (root: Root, context: RequestContext) => Result;

/**
 * Declares that a @FieldResolver's answer is `resolve(root, context)`, the function its method returns too: the
 * built schema calls `resolve` itself (applyDirectResolvers) instead of type-graphql's wrapper, which looks up the
 * resolver instance, runs the middleware chain (the service declares none) and builds the parameter array on
 * every call, on every row of a list. The method stays the field's declaration (type, description, @Can).
 * @example `@ResolvedBy(accessKeyOf)` above `@FieldResolver(...) accessKey(@Root() user, @Ctx() ctx)`
 */
export function ResolvedBy<Root>(resolve: DirectResolver<Root>): MethodDecorator {
  return Extensions({ [DIRECT_RESOLVER_EXTENSION]: resolve });
}

/**
 * Makes each field declared with ResolvedBy resolve through its function, in place; before
 * enforceDeclaredRules, so that a field's guard stays in front of it. Returns the schema.
 */
export function applyDirectResolvers(schema: GraphQLSchema): GraphQLSchema {
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type)) continue;
    for (const field of Object.values(type.getFields())) {
      const resolve = field.extensions?.[DIRECT_RESOLVER_EXTENSION] as DirectResolver<unknown> | undefined;
      if (resolve) field.resolve = (root, _args, context: RequestContext) => resolve(root, context);
    }
  }
  return schema;
}
