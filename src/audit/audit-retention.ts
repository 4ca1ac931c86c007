import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';

/**
 * The advisory lock (pg_try_advisory_lock, session level) that one instance holds while it deletes: every
 * instance runs retention, and those that find it taken skip that run. A constant of this service's own.
 */
export const AUDIT_RETENTION_LOCK = 0x6372_6d17;

export interface AuditRetentionSettings {
  /** Events older than this many days are deleted; null: none is (AUDIT_RETENTION_DAYS=off). */
  readonly days: number | null;
  /** Rows per DELETE statement (each its own short transaction). */
  readonly batchSize: number;
  /** Rest between two batches, so the deletion never holds a connection or the disk for long. */
  readonly pauseMs: number;
  /** The first run this long after start, then one run every `intervalMs`. */
  readonly firstRunAfterMs: number;
  readonly intervalMs: number;
}

export const DEFAULT_AUDIT_RETENTION: Omit<AuditRetentionSettings, 'days'> = {
  batchSize: 1000,
  pauseMs: 200,
  firstRunAfterMs: 60_000,
  intervalMs: 3_600_000,
};

/** Test-only pauses; never set in production. */
export interface AuditRetentionHooks {
  /** Inside a batch's transaction, after its DELETE and before its COMMIT: the batch's rows are locked. */
  batchDeleted?(rows: number): Promise<void>;
}

/** What one run did: null when another instance held the lock (or retention is off). */
export interface RetentionRun {
  readonly deleted: number;
  readonly batches: number;
}

/**
 * Deletes audit events older than AUDIT_RETENTION_DAYS (issue 17), oldest first, in batches of `batchSize` rows
 * chosen through the created_at index and deleted by primary key, each batch its own transaction, with a pause
 * between batches. Requests never wait for it: nothing a request does locks or updates audit rows (they only
 * insert new ones and read with MVCC snapshots), and a batch holds its few rows for milliseconds. One instance
 * deletes at a time (an advisory lock); a failed run is logged as a warning and retried at the next interval.
 */
export class AuditRetention {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RetentionRun | null> | null = null;
  private stopped = false;
  private wakePause: (() => void) | null = null;

  constructor(
    private readonly deps: {
      dataSource: DataSource;
      logger: Logger;
      settings: AuditRetentionSettings;
      hooks?: AuditRetentionHooks;
    },
  ) {}

  /** Schedules the runs (first after `firstRunAfterMs`, then every `intervalMs`); nothing when retention is off. */
  start(): void {
    if (this.deps.settings.days === null || this.timer || this.stopped) return;
    const schedule = (delayMs: number) => {
      this.timer = setTimeout(() => {
        void this.runOnce().finally(() => {
          if (!this.stopped) schedule(this.deps.settings.intervalMs);
        });
      }, delayMs);
      this.timer.unref();
    };
    schedule(this.deps.settings.firstRunAfterMs);
  }

  /** Stops scheduling, ends a run between batches (a batch in flight commits first) and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.wakePause?.();
    await this.running?.catch(() => undefined);
  }

  /**
   * One run: deletes every event older than the retention, batch by batch, unless another instance (or this
   * one) is already at it. Resolves null when the lock was taken elsewhere or retention is off; never rejects
   * (a database error is logged as a warning and ends the run).
   */
  runOnce(): Promise<RetentionRun | null> {
    if (this.running) return Promise.resolve(null);
    this.running = this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(): Promise<RetentionRun | null> {
    const { days, batchSize, pauseMs } = this.deps.settings;
    if (days === null) return null;
    let client: PoolClient | null = null;
    let locked = false;
    let deleted = 0;
    let batches = 0;
    try {
      client = await (this.deps.dataSource.driver as unknown as { master: Pool }).master.connect();
      [{ locked }] = (
        await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock($1) AS locked`, [AUDIT_RETENTION_LOCK])
      ).rows;
      if (!locked) return null;
      while (!this.stopped) {
        await client.query('BEGIN');
        const { rowCount } = await client.query(
          `DELETE FROM audit_events WHERE id = ANY(ARRAY(
             SELECT id FROM audit_events WHERE created_at < now() - make_interval(days => $1) ORDER BY created_at LIMIT $2))`,
          [days, batchSize],
        );
        const rows = rowCount ?? 0;
        await this.deps.hooks?.batchDeleted?.(rows);
        await client.query('COMMIT');
        batches++;
        deleted += rows;
        if (rows < batchSize) break;
        await this.pause(pauseMs);
      }
      if (deleted > 0) this.deps.logger.info({ deleted, batches, days }, 'audit retention: deleted old audit events');
      return { deleted, batches };
    } catch (error) {
      await client?.query('ROLLBACK').catch(() => undefined);
      this.deps.logger.warn(
        { err: error, deleted },
        'audit retention: run failed; it is tried again at the next interval',
      );
      return { deleted, batches };
    } finally {
      // A connection that could not give the lock back is closed (which frees it), not returned to the pool.
      const unlockError = locked
        ? await client!.query(`SELECT pg_advisory_unlock($1)`, [AUDIT_RETENTION_LOCK]).then(
            () => undefined,
            (error: Error) => error,
          )
        : undefined;
      client?.release(unlockError);
    }
  }

  /** Waits `ms`, or less when stop() wakes it. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakePause = done;
    }).finally(() => {
      this.wakePause = null;
    });
  }
}
