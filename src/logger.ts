import pino, { type Logger } from 'pino';

import { CREDENTIAL_CENSOR, redactCredentials } from './credential-shape';

/**
 * Field names whose values are credentials, compared without letter case: replaced at any depth of every
 * logged object (pino's own `redact` paths reach one level per wildcard, so they are not used).
 */
export const REDACTED_FIELDS: ReadonlySet<string> = new Set(
  [
    'password',
    'newPassword',
    'currentPassword',
    'adminPassword',
    'accessKey',
    'adminAccessKey',
    'access_key',
    'token',
    'key',
    'secret',
    'authorization',
    'x-access-key',
    'cookie',
    'set-cookie',
  ].map((name) => name.toLowerCase()),
);

/** Deeper than this, a value is replaced rather than walked (a guard against pathological objects). */
const MAX_DEPTH = 100;

/**
 * A copy of `value` with credential fields censored at every depth and credentials removed from strings
 * (keys and session tokens wherever they stand in one, in any spelling: redactCredentials, credential-shape.ts).
 * Plain objects, arrays and errors are walked (errors through `serializeError`, so their own fields and
 * causes are covered); other objects (dates, buffers) are kept as they are.
 */
export function redact(value: unknown): unknown {
  return walk(value, { seen: new WeakSet(), depth: 0 });
}

interface Walk {
  /** Objects on the way here, so a cycle is cut instead of followed. */
  readonly seen: WeakSet<object>;
  readonly depth: number;
}

function walk(value: unknown, at: Walk): unknown {
  if (typeof value === 'string') return redactCredentials(value);
  if (value === null || typeof value !== 'object') return value;
  if (at.depth > MAX_DEPTH) return '[too deep]';
  if (at.seen.has(value)) return '[circular]';
  at.seen.add(value);
  const inner = { seen: at.seen, depth: at.depth + 1 };
  if (Array.isArray(value)) return value.map((item) => walk(item, inner));
  if (value instanceof Error) return walkFields(serializeError(value), inner);
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return value;
  return walkFields(value as Record<string, unknown>, inner);
}

function walkFields(value: Record<string, unknown>, at: Walk): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value)) {
    copy[name] =
      REDACTED_FIELDS.has(name.toLowerCase()) && item !== undefined && item !== null
        ? CREDENTIAL_CENSOR
        : walk(item, at);
  }
  return copy;
}

/** Errors as pino writes them, minus SQL parameters (key digests, ciphertexts, token digests). */
function serializeError(error: Error): Record<string, unknown> {
  const serialized = pino.stdSerializers.err(error) as unknown as Record<string, unknown>;
  delete serialized.parameters;
  const driverError = serialized.driverError as Record<string, unknown> | undefined;
  if (driverError && typeof driverError === 'object') delete driverError.parameters;
  return serialized;
}

/**
 * A URL as logged: the path only, up to its first `?`, `;` or `#` (query strings, matrix parameters and
 * fragments carry whatever a client put there: keys, passwords), percent-escapes decoded first so an encoded
 * `?`, `;` or `#` is cut like a plain one. Keys and tokens are redacted in any spelling (`c%61k_...`, `CAK_...`,
 * `/x_cak_...`), also where one decoding leaves them encoded (`%2563ak_...`) or the path does not decode.
 */
export function pathOnly(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let path = url.slice(0, cutAt(url));
  try {
    path = decodeURIComponent(path);
  } catch {
    // A malformed escape: the raw path, cut the same way.
  }
  return redactCredentials(path.slice(0, cutAt(path)));
}

function cutAt(text: string): number {
  const at = text.search(/[?;#]/);
  return at === -1 ? text.length : at;
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

/**
 * The JSON logger. Every logged object goes through `redact` (`formatters.log`), child bindings too, and
 * message strings lose credentials (`hooks.logMethod`); requests are logged with their path only.
 */
export function createLogger(params: { level: string; destination?: pino.DestinationStream }): Logger {
  const logger = pino(
    {
      level: params.level,
      formatters: {
        // `req` and `res` are Fastify's request and reply objects, turned into small records by the serializers.
        log: (object) => {
          const { req, res, ...rest } = object;
          return {
            ...(redact(rest) as object),
            ...(req === undefined ? {} : { req }),
            ...(res === undefined ? {} : { res }),
          };
        },
      },
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((arg) => (typeof arg === 'string' ? redactCredentials(arg) : arg)) as Parameters<typeof method>,
          );
        },
      },
      serializers: {
        // Already a plain record when it went through `redact` in formatters.log.
        err: (error: unknown) => (error instanceof Error ? redact(error) : error),
        req: (request: LoggedRequest) => ({
          method: request.method,
          url: pathOnly(request.url),
          host: request.host,
          remoteAddress: request.ip,
          remotePort: request.socket?.remotePort,
        }),
      },
    },
    params.destination,
  );
  // pino hands a child's bindings to no formatter; children inherit this `child` from the root logger.
  const child = logger.child;
  logger.child = function redactedChild(this: Logger, bindings, options) {
    return child.call(this, redact(bindings) as pino.Bindings, options);
  } as typeof logger.child;
  return logger;
}

/**
 * What to give Fastify as its `loggerInstance`: `logger` itself (everything is inherited from it), except that
 * `child()` returns a RequestLogger. Fastify makes its own logger with it at startup, and through that one each
 * request's (with the request id): both write through pino children made on their first line. Fastify's own
 * child-logger factory calls `child()`, so Fastify does not check every request's logger for its methods, as it
 * does the result of a custom `childLoggerFactory` (an array and a closure per request).
 */
export function withRequestLoggers(logger: Logger): Logger {
  const root = Object.create(logger) as Logger;
  root.child = ((bindings: pino.Bindings, options?: pino.ChildLoggerOptions) =>
    new RequestLogger(logger, bindings, options ?? {})) as unknown as typeof logger.child;
  return root;
}

type LogArguments = [object | string, ...unknown[]];

/**
 * Fastify's per-request logger (see withRequestLoggers), made only when the request writes a line. A pino
 * child with the request id costs its bindings' serialization (and their redaction) on every request; with
 * request logging off (LOG_REQUESTS unset) almost no request ever logs, so most never pay for it. Methods
 * live on the prototype: nothing but this small object is allocated per request.
 */
export class RequestLogger {
  private made: Logger | null = null;

  constructor(
    private readonly parent: Logger | RequestLogger,
    private readonly bindings: pino.Bindings,
    private readonly options: pino.ChildLoggerOptions,
  ) {}

  /** The real child logger, with the request's bindings: made on first use (its parent's too, if not yet made). */
  get logger(): Logger {
    if (!this.made) {
      const parent = this.parent instanceof RequestLogger ? this.parent.logger : this.parent;
      this.made = parent.child(this.bindings, this.options);
    }
    return this.made;
  }

  /** The level lines are written at: the child's once made, else the options' or the parent's. */
  get level(): string {
    return this.made?.level ?? this.options.level ?? this.parent.level;
  }

  set level(level: string) {
    this.logger.level = level;
  }

  /** Whether a line at `level` would be written, decided without making the child. */
  isLevelEnabled(level: string): boolean {
    return this.made ? this.made.isLevelEnabled(level) : pino.levels.values[level] >= pino.levels.values[this.level];
  }

  /** pino's `fatal(obj?, msg?, ...)`: written with the request's bindings when the level allows it. */
  fatal(...args: LogArguments): void {
    this.write('fatal', args);
  }

  /** pino's `error(obj?, msg?, ...)`: written with the request's bindings when the level allows it. */
  error(...args: LogArguments): void {
    this.write('error', args);
  }

  /** pino's `warn(obj?, msg?, ...)`: written with the request's bindings when the level allows it. */
  warn(...args: LogArguments): void {
    this.write('warn', args);
  }

  /** pino's `info(obj?, msg?, ...)`: written with the request's bindings when the level allows it. */
  info(...args: LogArguments): void {
    this.write('info', args);
  }

  /** pino's `debug(obj?, msg?, ...)`: written with the request's bindings when the level allows it. */
  debug(...args: LogArguments): void {
    this.write('debug', args);
  }

  /** pino's `trace(obj?, msg?, ...)`: written with the request's bindings when the level allows it. */
  trace(...args: LogArguments): void {
    this.write('trace', args);
  }

  /** pino's `silent` level method: writes nothing. */
  silent(): void {}

  /**
   * A child with `bindings` added, made (with this one) when it first writes a line. Fastify makes its own
   * logger as a child of the one it is given, and each request's logger as a child of that.
   */
  child(bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
    return new RequestLogger(this, bindings, options ?? {}) as unknown as Logger;
  }

  private write(level: pino.Level, args: LogArguments): void {
    // A line below the level is dropped without making the child.
    if (!this.isLevelEnabled(level)) return;
    (this.logger[level] as (...line: LogArguments) => void)(...args);
  }
}
