import type { Client } from 'pg';
import type { Logger } from 'pino';

import { createClient } from './pg-client';

type Handler = (payload: string) => void;

/** PostgreSQL's undefined_table: a connect handler ran before the migrations created what it reads. */
const UNDEFINED_TABLE = '42P01';
const MIN_RETRY_MS = 100;
const MAX_RETRY_MS = 2000;
/**
 * A LISTEN connection is idle; it is asked `SELECT 1` this often. PostgreSQL sends the notifications of
 * every transaction committed before the query arrived ahead of the query's answer, so an answer proves
 * that everything committed before its send has been heard (handlers of `onHeartbeat` learn the send time, on the monotonic clock).
 */
export const HEARTBEAT_MS = 500;
/** A heartbeat unanswered this long, or a dead TCP peer, means a lost connection: reconnect. */
const HEARTBEAT_TIMEOUT_MS = 5000;

/**
 * One dedicated connection per instance that LISTENs for changes other instances make (revoked keys,
 * blocked clients). While it is disconnected nothing can be trusted to be current, so `onDisconnect`
 * handlers drop what they cached; after every (re)connect `onConnect` handlers reload what they need.
 */
export class Notifications {
  /** The connection being opened or listening; events from any earlier one are ignored. */
  private client: Client | null = null;
  private readonly handlers = new Map<string, Handler[]>();
  private readonly connectHandlers: Array<() => void | Promise<void>> = [];
  private readonly disconnectHandlers: Array<() => void> = [];
  private readonly heartbeatHandlers: Array<(sentAtMs: number) => void> = [];
  /** A heartbeat is unanswered: the next one waits (queued queries would prove nothing sooner). */
  private beating = false;
  private retryMs = MIN_RETRY_MS;
  /**
   * The loss of the current outage was logged. An outage ends only when a connection has run every
   * `onConnect` handler: one that keeps failing in a handler (the rate limiter's reload on a database whose
   * migrations are pending: "relation does not exist") is one outage, logged once, retried with backoff.
   */
  private lossLogged = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private stopped = false;
  private connected = false;

  constructor(private readonly deps: { url: string; logger: Logger; connectTimeoutMs: number }) {}

  /** Calls `handler` with the payload of every NOTIFY on `channel` (LISTEN is sent on each connect). */
  on(channel: string, handler: Handler): void {
    this.handlers.set(channel, [...(this.handlers.get(channel) ?? []), handler]);
  }

  /**
   * Calls `handler` each time the listener is (re)connected and listening: changes during the gap may have been missed.
   */
  onConnect(handler: () => void | Promise<void>): void {
    this.connectHandlers.push(handler);
  }

  /** Calls `handler` each time the listening connection is lost; until onConnect, announcements do not arrive. */
  onDisconnect(handler: () => void): void {
    this.disconnectHandlers.push(handler);
  }

  /** Called with the send time of each answered heartbeat (see HEARTBEAT_MS), on the monotonic clock (`performance.now()`). */
  onHeartbeat(handler: (sentAtMs: number) => void): void {
    this.heartbeatHandlers.push(handler);
  }

  /** True while the listening connection is up. */
  get isListening(): boolean {
    return this.connected;
  }

  /** Resolves once listening; if the database is down it keeps retrying in the background. */
  async start(): Promise<void> {
    await this.connect();
  }

  /** Stops listening for good: no more retries or heartbeats; the connection is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    const client = this.client;
    const wasListening = this.connected;
    this.client = null;
    this.connected = false;
    // A connection still being opened is closed by connect() once it is up: ending it midway can leave
    // pg's connect() unanswered for good.
    if (wasListening) await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = createClient({
      connectionString: this.deps.url,
      connectionTimeoutMillis: this.deps.connectTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: HEARTBEAT_TIMEOUT_MS,
      query_timeout: HEARTBEAT_TIMEOUT_MS,
      application_name: 'crm-access-listener',
    });
    this.client = client;
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => {
      for (const handler of this.handlers.get(message.channel) ?? []) {
        try {
          handler(message.payload ?? '');
        } catch (error) {
          this.deps.logger.error({ err: error, channel: message.channel }, 'notification handler failed');
        }
      }
    });
    try {
      await client.connect();
      for (const channel of this.handlers.keys()) await client.query(`LISTEN "${channel.replace(/"/g, '""')}"`);
      // Stopped meanwhile (lost() has closed a lost one already).
      if (this.client !== client) {
        void client.end().catch(() => undefined);
        return;
      }
      this.connected = true;
      this.beating = false;
      this.heartbeat = setInterval(() => this.beat(client), HEARTBEAT_MS);
      this.heartbeat.unref();
      for (const handler of this.connectHandlers) {
        await handler();
        // Lost while a handler waited: the next connection runs them all again; these must not run unheard.
        if (this.client !== client) return;
      }
      // Up for good only now: a handler that fails would otherwise reset the backoff on every try.
      this.retryMs = MIN_RETRY_MS;
      this.lossLogged = false;
    } catch (error) {
      if (this.client === client) this.lost(client, error);
      else void client.end().catch(() => undefined);
    }
  }

  private beat(client: Client): void {
    if (this.beating) return;
    this.beating = true;
    // The monotonic clock: a step of the wall clock must not make an old heartbeat look recent (see AuthCache).
    const sentAtMs = performance.now();
    client.query('SELECT 1').then(
      () => {
        if (this.client !== client) return;
        this.beating = false;
        for (const handler of this.heartbeatHandlers) handler(sentAtMs);
      },
      (error: unknown) => this.lost(client, error),
    );
  }

  private lost(client: Client, error?: unknown): void {
    if (this.client !== client) return;
    const wasConnected = this.connected;
    this.client = null;
    this.connected = false;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    client.end().catch(() => undefined);
    for (const handler of this.disconnectHandlers) handler();
    if (this.stopped || this.retryTimer) return;
    if (wasConnected && !this.lossLogged) {
      this.lossLogged = true;
      // A handler read a table that is not there yet (an instance started before `npm run migrate`, or waiting
      // for another's): nothing was lost, and the start has already said at its own level that migrations are
      // pending, so this is information; PostgreSQL's one sentence says which table.
      if ((error as { code?: unknown } | undefined)?.code === UNDEFINED_TABLE) {
        this.deps.logger.info(
          { reason: (error as Error).message },
          'the notification listener waits for the migrations (a table it reads is missing); retrying',
        );
      } else this.deps.logger.warn({ err: error }, 'lost the notification connection; reconnecting');
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }
}
