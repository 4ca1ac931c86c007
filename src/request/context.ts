import type { FastifyBaseLogger } from 'fastify';
import { createParameterDecorator } from 'type-graphql';

import { UnauthenticatedError } from '../errors';
import type { Actor } from './actor';
import type { Loaders } from './loaders';

export type { Actor } from './actor';

export interface RequestContext {
  readonly requestId: string;
  readonly ip: string;
  /** Null for a request without credentials: it may only run the public fields. */
  readonly actor: Actor | null;
  readonly loaders: Loaders;
  /** The request's logger: every line carries the request id. */
  readonly log: FastifyBaseLogger;
}

/**
 * The request's authenticated actor: what CurrentActor injects, for fields resolved directly (ResolvedBy).
 * @throws UnauthenticatedError for a request without credentials.
 */
export function currentActorOf(context: RequestContext): Actor {
  if (!context.actor) throw new UnauthenticatedError();
  return context.actor;
}

/** Injects the authenticated actor; a request without credentials gets UNAUTHENTICATED at this field. */
export function CurrentActor(): ReturnType<typeof createParameterDecorator> {
  return createParameterDecorator<RequestContext>(({ context }) => currentActorOf(context));
}
