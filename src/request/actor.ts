import { createParameterDecorator } from 'type-graphql';
import type { AppAbility } from '../authorization/abilities';
import type { Principal } from '../authentication/principal';
import type { FastifyBaseLogger } from 'fastify';
import type { Loaders } from './loaders';
import { UnauthenticatedError, type DomainError } from '../errors';

/** Who is acting in a request, and from where: what services check and what audit records. */
export interface Actor {
  readonly principal: Principal;
  readonly ability: AppAbility;
  readonly requestId: string;
  readonly ip: string;
  /**
   * Set when an act of this request was refused because the caller's authority ended or changed while it
   * ran: every later write or key reveal of the request is refused with it, without another query.
   */
  refusal?: DomainError;
}

export interface RequestContext {
  readonly requestId: string;
  readonly ip: string;
  /** Null for a request without credentials: it may only run the public fields. */
  readonly actor: Actor | null;
  readonly loaders: Loaders;
  /** The request's logger: every line carries the request id. */
  readonly log: FastifyBaseLogger;
}

/** Injects the authenticated actor; a request without credentials gets UNAUTHENTICATED at this field. */
export function CurrentActor(): ReturnType<typeof createParameterDecorator> {
  return createParameterDecorator<RequestContext>(({ context }) => {
    if (!context.actor) throw new UnauthenticatedError();
    return context.actor;
  });
}
