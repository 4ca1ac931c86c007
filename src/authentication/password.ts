import { randomBytes, scrypt as scryptCallback, type ScryptOptions, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

import { DomainError } from '../errors';
import { clientBucket } from '../rate-limiting/client-bucket';

const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: ScryptOptions,
) => Promise<Buffer>;

// OWASP's scrypt baseline (N=2^17, r=8, p=1): memory-hard, about 128 MiB per hash.
const PARAMS = { N: 2 ** 17, r: 8, p: 1 };
const KEY_BYTES = 32;
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;

function options(params: { N: number; r: number; p: number }): ScryptOptions {
  return { ...params, maxmem: 256 * params.N * params.r };
}

/** `scrypt$N$r$p$salt$hash`, so parameters can be raised later without breaking stored hashes. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, KEY_BYTES, options(PARAMS));
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

/**
 * Whether `password` matches `stored` (hashPassword's format), with the parameters stored in it, compared in
 * constant time. False for any other format (a user without a password has none).
 * @throws Error from node:crypto when the stored parameters are invalid (a corrupted row).
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, options({ N: +n, r: +r, p: +p }));
  return timingSafeEqual(actual, expected);
}

export interface PasswordWorkSettings {
  /** scrypt computations running at once in this process (each holds about 128 MiB). */
  readonly concurrency: number;
  /** Computations that may wait for a turn; one more answers SERVICE_UNAVAILABLE (503). */
  readonly queue: number;
  /**
   * Hashes and verifications one client address (its bucket: an IPv6 address by its /64) may have running or
   * waiting at once; one more answers RATE_LIMITED (429).
   */
  readonly perClient: number;
}

const RETRY_AFTER_SECONDS = 1;

/**
 * Every password hash and verification of the process goes through here: at most `concurrency` scrypt
 * computations run at once and at most `queue` wait, so a burst of sign-ins cannot exhaust memory or make
 * sign-in slow for everyone; one client address may hold only `perClient` of those places.
 */
export class PasswordHasher {
  /** Verifications started by this process: tests count them. */
  verifications = 0;
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly inFlightByClient = new Map<string, number>();

  constructor(
    private readonly settings: PasswordWorkSettings,
    /** Test-only: awaited inside a request's hash or verification while it holds its places (see PauseHooks in authority.ts). */
    private readonly hooks: { duringPasswordCheck?(client: string): Promise<void> } = {},
  ) {}

  /** Computations waiting for a turn. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Hashes a new password for a request from `client` (null: not a request, e.g. the CLI). Throws RATE_LIMITED
   * when that address already has `perClient` hashes or verifications under way (an admin's burst of
   * createUser or changePassword cannot take every place), SERVICE_UNAVAILABLE when the queue is full.
   */
  hash(password: string, client: string | null): Promise<string> {
    if (client === null) return this.run(() => hashPassword(password));
    return this.forClient(client, () =>
      this.run(async () => {
        await this.hooks.duringPasswordCheck?.(client);
        return hashPassword(password);
      }),
    );
  }

  /**
   * Verifies a password against a stored hash for a request from `client`. Throws RATE_LIMITED when that
   * address already has `perClient` verifications under way, SERVICE_UNAVAILABLE when the queue is full;
   * neither is a failed attempt.
   */
  verify(params: { password: string; stored: string; client: string }): Promise<boolean> {
    const { client } = params;
    return this.forClient(client, () =>
      this.run(async () => {
        this.verifications++;
        await this.hooks.duringPasswordCheck?.(client);
        return verifyPassword(params.password, params.stored);
      }),
    );
  }

  /** Runs `work` holding one of the address's `perClient` places; RATE_LIMITED when none is free. */
  private async forClient<T>(address: string, work: () => Promise<T>): Promise<T> {
    const client = clientBucket(address);
    const inFlight = this.inFlightByClient.get(client) ?? 0;
    if (inFlight >= this.settings.perClient) {
      throw new DomainError(
        'Too many password checks from this address at once: try again in a moment.',
        'RATE_LIMITED',
        {
          retryAfterSeconds: RETRY_AFTER_SECONDS,
        },
      );
    }
    this.inFlightByClient.set(client, inFlight + 1);
    try {
      return await work();
    } finally {
      const left = (this.inFlightByClient.get(client) ?? 1) - 1;
      if (left > 0) this.inFlightByClient.set(client, left);
      else this.inFlightByClient.delete(client);
    }
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running < this.settings.concurrency) {
      this.running++;
    } else {
      if (this.waiting.length >= this.settings.queue) {
        throw new DomainError('The service is busy verifying passwords: try again shortly.', 'SERVICE_UNAVAILABLE', {
          retryAfterSeconds: RETRY_AFTER_SECONDS,
        });
      }
      // The finishing computation hands its place over, so `running` stays counted.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
