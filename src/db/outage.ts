import type { Logger } from 'pino';

/** How often, during an outage, the tracker checks whether it is over. */
export const OUTAGE_PROBE_INTERVAL_MS = 1000;

interface Episode {
  readonly startedAt: number;
  failures: number;
  /** Failures reported since the last check: while requests still fail, the outage is not over. */
  failuresSinceCheck: number;
  timer: NodeJS.Timeout;
}

/**
 * Logs a database outage as two lines, not one per failed request: an error when the first request fails
 * because PostgreSQL cannot serve it (unreachable, out of connections, waits past their timeouts), and an info
 * line when it is over. It is over after a check interval in which no request failed and a probe statement
 * succeeded; a probe that fails (no connection to be had) keeps it open, however quiet the traffic.
 */
export class DatabaseOutage {
  private episode: Episode | null = null;

  constructor(
    private readonly deps: {
      logger: Logger;
      /** One cheap statement through the service's own pool (`SELECT 1`). */
      probe: () => Promise<unknown>;
      probeIntervalMs?: number;
    },
  ) {}

  /** True while an outage is open. */
  get ongoing(): boolean {
    return this.episode !== null;
  }

  /** A request could not be served because of `error`; `requestId` is logged with the first one only. */
  report(error: unknown, requestId: string): void {
    if (this.episode) {
      this.episode.failures++;
      this.episode.failuresSinceCheck++;
      return;
    }
    this.deps.logger.error(
      { err: error, requestId },
      'the database cannot serve requests: answering 503 with Retry-After until it recovers (logged once per outage)',
    );
    this.episode = { startedAt: Date.now(), failures: 1, failuresSinceCheck: 0, timer: this.schedule() };
  }

  private schedule(): NodeJS.Timeout {
    const timer = setTimeout(() => void this.check(), this.deps.probeIntervalMs ?? OUTAGE_PROBE_INTERVAL_MS);
    timer.unref();
    return timer;
  }

  private async check(): Promise<void> {
    const episode = this.episode;
    if (!episode) return;
    let over = episode.failuresSinceCheck === 0;
    episode.failuresSinceCheck = 0;
    if (over)
      over = await this.deps.probe().then(
        () => true,
        () => false,
      );
    if (this.episode !== episode) return;
    if (!over || episode.failuresSinceCheck > 0) {
      episode.timer = this.schedule();
      return;
    }
    this.episode = null;
    this.deps.logger.info(
      { failedRequests: episode.failures, outageMs: Date.now() - episode.startedAt },
      'the database is available again',
    );
  }

  /** Stops checking (shutdown); an open outage is left unlogged as over. */
  stop(): void {
    if (this.episode) clearTimeout(this.episode.timer);
    this.episode = null;
  }
}
