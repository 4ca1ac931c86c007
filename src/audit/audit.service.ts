import type { DataSource, EntityManager } from 'typeorm';

import { type ScopeCondition, scopeOf } from '../authorization/abilities';
import type { Authority } from '../authorization/authority';
import { runPrepared } from '../db/prepared';
import { SqlWhere } from '../db/scope';
import { BadInputError } from '../errors';
import { parseId } from '../graphql/ids';
import type { OpaqueIds, ScopedIds } from '../graphql/opaque-ids';
import type { Actor } from '../request/actor';
import type { AuditEventConnection, AuditEventsFilter } from './audit.types';
import { ActorKind, type AuditAction, AuditEvent } from './audit-event.entity';
import { type AuditActor, auditRowValues, INSERT_AUDIT_ROWS } from './audit-rows';
import { type KeyViewTarget, KeyViewWriter, type ReplacedTargetKeys } from './key-view-writer';

export const MAX_AUDIT_PAGE_SIZE = 500;

/**
 * What one `auditEvents` read with a filter adds to a request's query cost (src/graphql/query-limits.ts): each
 * is an index walk of its own, so under the default MAX_QUERY_COST (20,000) a request holds at most 19 of them,
 * and one of many aliased filtered reads is refused before any runs (issue 17).
 */
export const FILTERED_AUDIT_READ_COST = 1000;

export type { AuditActor } from './audit-rows';

export const SYSTEM_ACTOR: AuditActor = { userId: null, kind: ActorKind.SYSTEM, ip: null, requestId: null };

/**
 * Who an audit row names for an act of `actor`: the user, how they signed in (SESSION or ACCESS_KEY), the
 * client address and the request id.
 */
export function auditActorOf(actor: Actor): AuditActor {
  return {
    userId: actor.principal.userId,
    kind: actor.principal.kind === 'SESSION' ? ActorKind.SESSION : ActorKind.ACCESS_KEY,
    ip: actor.ip,
    requestId: actor.requestId,
  };
}

export interface AuditEntry {
  readonly action: AuditAction;
  readonly organizationId: string | null;
  readonly targetUserId?: string | null;
}

interface AuditEventRow {
  id: string;
  organization_id: string | null;
  action: AuditAction;
  actor_user_id: string | null;
  actor_kind: ActorKind;
  target_user_id: string | null;
  ip: string | null;
  request_id: string | null;
  created_at: Date;
  location: string | null;
}

/** The purpose an audit event's id and cursor are bound to (OpaqueIds), with the event's organization. */
export const AUDIT_EVENT_ID_PURPOSE = 'audit event';

const BAD_CURSOR = '"after" must be an endCursor returned by this API.';

/**
 * An event as the API shows it: its `id` is the opaque token of its row's bigint (OpaqueIds), never the number,
 * which counts every organization's events (one service-wide identity sequence).
 */
function auditEventFromRow(row: AuditEventRow, ids: ScopedIds): AuditEvent {
  return Object.assign(new AuditEvent(), {
    id: ids.encode(row.id),
    organizationId: row.organization_id,
    action: row.action,
    actorUserId: row.actor_user_id,
    actorKind: row.actor_kind,
    targetUserId: row.target_user_id,
    ip: row.ip,
    requestId: row.request_id,
    createdAt: row.created_at,
    location: row.location,
  });
}

/**
 * The rows an admin may read, and the order of a page of them: newest first, by id. For one organization (every
 * admin's scope) that is written as `organization_id = ANY($1)` ordered by (organization_id, id): only the
 * (organization_id[, filter column], id) indexes (migration ScaleIndexes) give that order, so PostgreSQL walks
 * them and stops after the page. Written as `organization_id = $1 ORDER BY id`, the planner, which assumes an
 * organization's events are spread evenly over the ids, walks the primary key instead and filters out every newer
 * event of other organizations (measured in docs/performance.md; test/audit/audit-plans.test.ts).
 */
function auditScope(conditions: readonly ScopeCondition[]): { where: SqlWhere; order: string } {
  const [only] = conditions;
  const organizationId =
    conditions.length === 1 && Object.keys(only).join() === 'organizationId' ? only.organizationId : null;
  if (organizationId === null) {
    return { where: new SqlWhere().scope(conditions, { organizationId: 'e.organization_id' }), order: 'e.id DESC' };
  }
  return {
    where: new SqlWhere().and('e.organization_id = ANY(?::uuid[])', [organizationId]),
    order: 'e.organization_id DESC, e.id DESC',
  };
}

/** Writes the audit log in the caller's transaction, so a change and its record commit or roll back together. */
export class AuditService {
  /** The group commit of key views (its `waiting` tells tests when a batch has formed). */
  readonly keyViews: KeyViewWriter;

  constructor(private readonly deps: { dataSource: DataSource; authority: Authority; ids: OpaqueIds }) {
    this.keyViews = new KeyViewWriter(deps);
  }

  /**
   * Inserts one audit row per entry, all by `actor`, in `manager`'s transaction (one statement): the events
   * commit or roll back with the change they describe. No entries: nothing is written.
   * @throws the database's error (the caller's transaction then rolls back the change too).
   */
  async record(manager: EntityManager, actor: AuditActor, ...entries: AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const rows = entries.map((entry) => ({ actor, ...entry, targetUserId: entry.targetUserId ?? null }));
    await manager.query(INSERT_AUDIT_ROWS, auditRowValues(rows));
  }

  /**
   * One ACCESS_KEY_VIEWED per revealed key; resolves once committed (with other requests' views), after the
   * actor's authority was confirmed in that commit's transaction, with the targets whose key was replaced
   * since `targets` were read (their current ciphertext, or null for no key: show that instead, see
   * ReplacedTargetKeys). Rejects with UNAUTHENTICATED or FORBIDDEN when the actor may no longer see them (see
   * KeyViewWriter): then the keys must not be returned.
   */
  recordKeyViews(actor: Actor, targets: readonly KeyViewTarget[]): Promise<ReplacedTargetKeys> {
    return this.keyViews.record({ actor, who: auditActorOf(actor), targets });
  }

  /**
   * The caller's organization's events, newest first (by the row's bigint id, which follows insertion order).
   * Each event's `id` and each cursor is the same opaque token (OpaqueIds, bound to the caller's organization):
   * an event's id is also a valid `after`.
   * @throws BadInputError on `first` out of range, a malformed filter id, or an `after` that is not a cursor this
   *   API gave the caller's organization (forged, altered, another organization's, or from a retired secret).
   */
  async list(
    actor: Actor,
    args: { filter?: AuditEventsFilter | null; first: number; after?: string | null },
  ): Promise<AuditEventConnection> {
    const { filter, first, after } = args;
    if (!Number.isInteger(first) || first < 0 || first > MAX_AUDIT_PAGE_SIZE) {
      throw new BadInputError(`"first" must be from 0 to ${MAX_AUDIT_PAGE_SIZE}.`, 'first');
    }
    const { where, order } = auditScope(scopeOf(actor.ability, 'read', 'AuditEvent'));
    if (filter?.action) where.and('e.action = ?', filter.action);
    // An empty id is a malformed one (BAD_USER_INPUT), not no filter: only null or no field is.
    if (filter?.actorId != null) where.and('e.actor_user_id = ?', parseId(filter.actorId, 'actorId'));
    if (filter?.targetUserId != null) {
      where.and('e.target_user_id = ?', parseId(filter.targetUserId, 'targetUserId'));
    }
    if (filter?.since) where.and('e.created_at >= ?', filter.since);
    if (filter?.until) where.and('e.created_at < ?', filter.until);
    // Bound to the caller's organization (every row of the page is one of its, by the scope above): another
    // organization's cursor fails to open here, before any read.
    const ids = this.deps.ids.forScope({
      purpose: AUDIT_EVENT_ID_PURPOSE,
      organizationId: actor.principal.organizationId,
    });
    // An empty cursor is none this API gave (BAD_USER_INPUT), not the first page: only null or no argument is.
    if (after != null) {
      const key = ids.decode(after);
      if (key === null) throw new BadInputError(BAD_CURSOR, 'after');
      where.and('e.id < ?', key);
    }
    // LIMIT first + 1: the extra row tells hasNextPage (Relay's connection spec), first: 0 included (one row read).
    const rows = await runPrepared<AuditEventRow>(
      this.deps.dataSource,
      `SELECT e.id::text AS id, e.organization_id, e.action, e.actor_user_id, e.actor_kind, e.target_user_id, e.ip,
              e.request_id, e.created_at, e.location
         FROM audit_events e WHERE ${where} ORDER BY ${order} LIMIT ${where.param(first + 1)}`,
      where.values,
    );
    const nodes = rows.slice(0, first).map((row) => auditEventFromRow(row, ids));
    return {
      edges: nodes.map((node) => ({ cursor: node.id, node })),
      pageInfo: { hasNextPage: rows.length > first, endCursor: nodes.at(-1)?.id ?? null },
    };
  }
}
