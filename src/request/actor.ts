import type { Principal } from '../authentication/principal';
import type { AppAbility } from '../authorization/abilities';
import type { DomainError } from '../errors';
import type { GrantedChecks } from './granted-checks';

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
  /**
   * What this request's abilities granted on which objects so far (GrantedChecks): set by the first service
   * that records one (a page of users revealing keys), read by the fields' guards.
   */
  grants?: GrantedChecks;
}
