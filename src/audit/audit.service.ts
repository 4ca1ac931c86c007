import type { DataSource, EntityManager } from 'typeorm';
import { scopeOf } from '../auth/abilities';
import type { Actor } from '../context';
import { whereScope } from '../db/scope';
import { BadInputError } from '../errors';
import { parseId } from '../users/user.validation';
import { ActorKind, AuditAction, AuditEvent } from './audit-event.entity';
import type { AuditEventConnection, AuditEventsFilter } from './audit.types';

export const MAX_AUDIT_PAGE_SIZE = 500;

/** Who did it, as the audit log records it: a signed-in person, a key, or an operator command. */
export interface AuditActor {
  readonly userId: string | null;
  readonly kind: ActorKind;
  readonly ip: string | null;
  readonly requestId: string | null;
}

export const SYSTEM_ACTOR: AuditActor = { userId: null, kind: ActorKind.SYSTEM, ip: null, requestId: null };

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

const COLUMNS = 'organization_id, action, actor_user_id, actor_kind, target_user_id, ip, request_id';

/** Writes the audit log in the caller's transaction, so a change and its record commit or roll back together. */
export class AuditService {
  constructor(private readonly deps: { dataSource: DataSource }) {}

  async record(manager: EntityManager, actor: AuditActor, ...entries: AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const values: unknown[] = [];
    const rows = entries.map((entry) => {
      values.push(entry.organizationId, entry.action, actor.userId, actor.kind, entry.targetUserId ?? null, actor.ip, actor.requestId);
      const base = values.length - 7;
      return `(${Array.from({ length: 7 }, (_, i) => `$${base + i + 1}`).join(', ')})`;
    });
    await manager.query(`INSERT INTO audit_events (${COLUMNS}) VALUES ${rows.join(', ')}`, values);
  }

  /** One ACCESS_KEY_VIEWED per revealed key, in one statement for a whole page of users. */
  async recordKeyViews(actor: Actor, targets: ReadonlyArray<{ userId: string; organizationId: string }>): Promise<void> {
    const who = auditActorOf(actor);
    await this.deps.dataSource.query(
      `INSERT INTO audit_events (${COLUMNS})
       SELECT t.organization_id, $3, $4, $5, t.user_id, $6, $7 FROM unnest($1::uuid[], $2::uuid[]) AS t(user_id, organization_id)`,
      [
        targets.map((t) => t.userId),
        targets.map((t) => t.organizationId),
        AuditAction.ACCESS_KEY_VIEWED,
        who.userId,
        who.kind,
        who.ip,
        who.requestId,
      ],
    );
  }

  /** The caller's organization's events, newest first (by id, which follows insertion order). */
  async list(
    actor: Actor,
    args: { filter?: AuditEventsFilter | null; first: number; after?: string | null },
  ): Promise<AuditEventConnection> {
    const { filter, first, after } = args;
    if (!Number.isInteger(first) || first < 0 || first > MAX_AUDIT_PAGE_SIZE) {
      throw new BadInputError(`"first" must be from 0 to ${MAX_AUDIT_PAGE_SIZE}.`, 'first');
    }
    const query = whereScope(
      this.deps.dataSource.getRepository(AuditEvent).createQueryBuilder('e'),
      scopeOf(actor.ability, 'read', 'AuditEvent'),
    );
    if (filter?.action) query.andWhere('e.action = :action', { action: filter.action });
    if (filter?.actorId) query.andWhere('e.actorUserId = :actorId', { actorId: parseId(filter.actorId, 'actorId') });
    if (filter?.targetUserId) {
      query.andWhere('e.targetUserId = :targetUserId', { targetUserId: parseId(filter.targetUserId, 'targetUserId') });
    }
    if (filter?.since) query.andWhere('e.createdAt >= :since', { since: filter.since });
    if (filter?.until) query.andWhere('e.createdAt < :until', { until: filter.until });
    if (after) {
      if (!/^[1-9][0-9]{0,17}$/.test(after)) throw new BadInputError('"after" must be an endCursor returned by this API.', 'after');
      query.andWhere('e.id < :after', { after });
    }
    const rows = first === 0 ? [] : await query.orderBy('e.id', 'DESC').limit(first + 1).getMany();
    const nodes = rows.slice(0, first);
    return {
      edges: nodes.map((node) => ({ cursor: node.id, node })),
      pageInfo: { hasNextPage: rows.length > first, endCursor: nodes.at(-1)?.id ?? null },
    };
  }
}
