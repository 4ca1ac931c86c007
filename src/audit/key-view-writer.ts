import type { DataSource } from 'typeorm';
import { runPrepared } from '../db/scope';
import { AuditAction } from './audit-event.entity';
import type { AuditActor } from './audit.service';

export interface KeyView {
  readonly actor: AuditActor;
  readonly userId: string;
  readonly organizationId: string;
}

interface Waiting {
  views: readonly KeyView[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

const MAX_ROWS_PER_INSERT = 5000;

/**
 * Group commit for ACCESS_KEY_VIEWED: while one insert is being committed, the views of every other
 * request queue up and go in the next insert together. Each request still waits for the commit that
 * holds its own events before its keys are returned, so a view is never revealed without its record;
 * the database pays one commit (one WAL flush) per batch instead of one per request.
 */
export class KeyViewWriter {
  private queue: Waiting[] = [];
  private writing = false;

  constructor(private readonly deps: { dataSource: DataSource }) {}

  record(views: readonly KeyView[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ views, resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      const batch: Waiting[] = [];
      let rows = 0;
      while (this.queue.length > 0 && (batch.length === 0 || rows + this.queue[0].views.length <= MAX_ROWS_PER_INSERT)) {
        const next = this.queue.shift()!;
        rows += next.views.length;
        batch.push(next);
      }
      try {
        await this.insert(batch.flatMap((waiting) => waiting.views));
        for (const waiting of batch) waiting.resolve();
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
      }
    }
    this.writing = false;
  }

  private async insert(views: readonly KeyView[]): Promise<void> {
    const column = <T>(pick: (view: KeyView) => T) => views.map(pick);
    await runPrepared(
      this.deps.dataSource,
      `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, target_user_id, ip, request_id)
       SELECT organization_id, $1, actor_user_id, actor_kind, target_user_id, ip, request_id
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[])
           AS t(organization_id, actor_user_id, actor_kind, target_user_id, ip, request_id)`,
      [
        AuditAction.ACCESS_KEY_VIEWED,
        column((v) => v.organizationId),
        column((v) => v.actor.userId),
        column((v) => v.actor.kind),
        column((v) => v.userId),
        column((v) => v.actor.ip),
        column((v) => v.actor.requestId),
      ],
    );
  }
}
