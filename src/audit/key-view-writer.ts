import type { DataSource } from 'typeorm';
import { runPrepared } from '../db/prepared';
import { auditRowValues, INSERT_AUDIT_ROWS, type AuditRow } from './audit-rows';

interface Waiting {
  rows: readonly AuditRow[];
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

  record(rows: readonly AuditRow[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      const batch: Waiting[] = [];
      let size = 0;
      while (this.queue.length > 0 && (batch.length === 0 || size + this.queue[0].rows.length <= MAX_ROWS_PER_INSERT)) {
        const next = this.queue.shift()!;
        size += next.rows.length;
        batch.push(next);
      }
      try {
        await runPrepared(this.deps.dataSource, INSERT_AUDIT_ROWS, auditRowValues(batch.flatMap((waiting) => waiting.rows)));
        for (const waiting of batch) waiting.resolve();
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
      }
    }
    this.writing = false;
  }
}
