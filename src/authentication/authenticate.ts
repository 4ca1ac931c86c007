import type { IncomingMessage } from 'node:http';

import type { AccessKeyService } from '../access-keys/access-key.service';
import { type Clock, systemClock } from '../access-keys/clock';
import type { KeyCrypto } from '../access-keys/key-crypto';
import {
  ACCESS_KEY_LENGTH,
  ACCESS_KEY_PREFIX,
  isWellFormedAccessKey,
  isWellFormedSessionToken,
  SESSION_TOKEN_PREFIX,
} from '../access-keys/key-format';
import { CREDENTIALS_ENDED, SESSION_ENDED } from '../authorization/authority';
import { isHeaderName } from '../header-name';
import type { AuthRateLimiter } from '../rate-limiting/rate-limit';
import type { SessionService } from '../sessions/session.service';
import type { AuthCache } from './auth-cache';
import type { Principal } from './principal';

export type AuthFailureReason = 'MALFORMED_CREDENTIALS' | 'INVALID_CREDENTIALS';

export type AuthResult =
  | { readonly ok: true; readonly principal: Principal | null }
  | { readonly ok: false; readonly reason: AuthFailureReason; readonly message: string }
  | { readonly ok: false; readonly reason: 'RATE_LIMITED'; readonly retryAfterSeconds: number };

const MALFORMED_KEY =
  'The access key is malformed: check that no characters were lost or added when copying it ' +
  '(it starts with cak_ and is 42 characters long).';
const MALFORMED_TOKEN = 'The session token is malformed: check that no characters were lost or added when copying it.';
/** A Bearer value of neither shape (`Bearer null`: the README's sign-in example after a failed sign-in). */
const MALFORMED_BEARER =
  'The Bearer credential is neither an access key (cak_…) nor a session token (cas_…): send one of them, ' +
  'whole (42 characters). A failed sign-in gives no token.';
const ANONYMOUS: AuthResult = { ok: true, principal: null };

type Presented = { kind: 'ACCESS_KEY' | 'SESSION'; credential: string } | { kind: 'MALFORMED'; message: string } | null;

/** A request's headers as Node parsed them, and as they were sent (`rawHeaders`: name, value, name, value, ...). */
export type RequestHeaders = Pick<IncomingMessage, 'headers' | 'rawHeaders'>;

/**
 * The credential header sent more than once, if any. Node joins repeated X-Access-Key lines with ", " and
 * keeps only the first Authorization line, so only the raw list shows the repetition; a proxy that reads the
 * last line would see another caller than the service does. Names are compared by isHeaderName: no
 * allocation, whatever their spelling.
 */
function repeatedCredentialHeader(rawHeaders: readonly string[]): string | null {
  let keys = 0;
  let authorizations = 0;
  for (let index = 0; index < rawHeaders.length; index += 2) {
    const name = rawHeaders[index];
    if (isHeaderName(name, 'x-access-key')) keys++;
    else if (isHeaderName(name, 'authorization')) authorizations++;
  }
  if (keys > 1) return 'X-Access-Key';
  return authorizations > 1 ? 'Authorization' : null;
}

/** The credential in X-Access-Key or `Authorization: Bearer`; never the query string. */
function presentedCredential({ headers, rawHeaders }: RequestHeaders): Presented {
  const keyHeader = headers['x-access-key'];
  const authorization = headers.authorization;
  if (keyHeader === undefined && authorization === undefined) return null;
  const repeated = Array.isArray(keyHeader) ? 'X-Access-Key' : repeatedCredentialHeader(rawHeaders);
  if (repeated !== null || Array.isArray(keyHeader)) {
    return { kind: 'MALFORMED', message: `Send ${repeated ?? 'X-Access-Key'} once.` };
  }
  if (keyHeader !== undefined && authorization !== undefined) {
    return { kind: 'MALFORMED', message: 'Send credentials in X-Access-Key or in Authorization, not both.' };
  }
  if (keyHeader !== undefined) return { kind: 'ACCESS_KEY', credential: keyHeader.trim() };
  const match = /^\s*Bearer\s+(.*)$/is.exec(authorization ?? '');
  if (!match)
    return { kind: 'MALFORMED', message: 'The Authorization header must be "Bearer <access key or session token>".' };
  const credential = match[1].trim();
  if (credential.startsWith(SESSION_TOKEN_PREFIX)) return { kind: 'SESSION', credential };
  if (!credential.startsWith(ACCESS_KEY_PREFIX)) return { kind: 'MALFORMED', message: MALFORMED_BEARER };
  return { kind: 'ACCESS_KEY', credential };
}

/**
 * Turns a request's headers into its principal. A blocked client address is refused from memory, a
 * malformed credential from its shape and checksum: neither costs a lookup. Every other failure gets one
 * answer, so nothing is learned about which keys or sessions exist.
 */
export class Authenticator {
  constructor(
    private readonly deps: {
      accessKeys: AccessKeyService;
      sessions: SessionService;
      rateLimiter: AuthRateLimiter;
      keyCrypto: KeyCrypto;
      cache: AuthCache;
      /** What key expiry is decided by (see Clock); the system clock unless a test moves time. */
      clock?: Clock;
    },
  ) {}

  /** Lookups in flight by digest: concurrent requests with one uncached credential share one query. */
  private readonly inflight = new Map<string, Promise<Principal | null>>();

  /** The cached principal of a credential of this kind, if any: the hot path, with no lookup and no HMAC. */
  private cached(kind: 'ACCESS_KEY' | 'SESSION', cacheKey: string): Principal | undefined {
    const principal = this.deps.cache.get(cacheKey);
    // A session token sent in X-Access-Key is malformed there, even when the token itself is known.
    return principal?.kind === kind ? principal : undefined;
  }

  /**
   * One prepared lookup, shared by concurrent requests, whose answer is cached if nothing changed meanwhile.
   * The request that starts it first reserves one of its address's attempts (see AuthRateLimiter.reserve):
   * refused at once when none is left, given back when the credential is found, kept as a counted failure
   * when it is not. Requests that join a lookup under way reserve nothing and count their own failure.
   */
  private resolve(
    kind: 'ACCESS_KEY' | 'SESSION',
    credential: string,
    cacheKey: string,
    client: string,
  ): AuthResult | Promise<AuthResult> {
    // Per epoch: a request that arrives after a revocation never joins a lookup that started before it.
    const flightKey = `${this.deps.cache.epoch}:${cacheKey}`;
    const shared = this.inflight.get(flightKey);
    if (shared) return shared.then((principal) => this.settle(principal, client, kind));
    const { rateLimiter } = this.deps;
    const retryAfterSeconds = rateLimiter.reserve(client);
    if (retryAfterSeconds > 0) return { ok: false, reason: 'RATE_LIMITED', retryAfterSeconds };
    const lookup = this.lookup(kind, this.deps.keyCrypto.digests(credential), cacheKey).finally(() =>
      this.inflight.delete(flightKey),
    );
    this.inflight.set(flightKey, lookup);
    return lookup.then(
      (principal) => {
        rateLimiter.release(client, { failed: principal === null });
        return principal ? this.settle(principal, client, kind) : this.refusal(null, kind);
      },
      (error: unknown) => {
        rateLimiter.release(client, { failed: false });
        throw error;
      },
    );
  }

  /**
   * The database's answer for a credential, cached if nothing changed meanwhile. Its time limits are judged from
   * when the lookup began, not when its answer came in: a key's expiry is compared with the clock again once the
   * answer is in (the lookup read the service's clock before PostgreSQL's own waits: a table lock, a busy
   * server), and what is left of a grace period or session (`validForMs`, measured by PostgreSQL as it read the
   * row) counts from the monotonic instant before the statement was sent, so neither outlives its end by the
   * time the answer took to arrive.
   */
  private async lookup(
    kind: 'ACCESS_KEY' | 'SESSION',
    digests: readonly Buffer[],
    cacheKey: string,
  ): Promise<Principal | null> {
    const epoch = this.deps.cache.epoch;
    const sentAtMs = performance.now();
    const found =
      kind === 'SESSION' ? await this.deps.sessions.lookup(digests) : await this.deps.accessKeys.lookup(digests);
    if (!found || this.expired(found.principal)) return null;
    this.deps.cache.set(cacheKey, found.principal, { epoch, validForMs: found.validForMs, measuredAtMs: sentAtMs });
    return found.principal;
  }

  /**
   * Synchronous when the answer is known without the database (a cached credential, a malformed one, a
   * blocked address): the hot path then costs no promise at all.
   */
  authenticate(request: RequestHeaders, client: string): AuthResult | Promise<AuthResult> {
    const retryAfterSeconds = this.deps.rateLimiter.retryAfterSeconds(client);
    if (retryAfterSeconds > 0) return { ok: false, reason: 'RATE_LIMITED', retryAfterSeconds };
    const presented = presentedCredential(request);
    if (presented === null) return ANONYMOUS;
    if (presented.kind === 'MALFORMED') return this.fail(client, presented.message);
    const { kind, credential } = presented;
    // Keys and session tokens have one length: anything else is refused before it costs a hash.
    if (credential.length !== ACCESS_KEY_LENGTH) return this.malformed(kind, credential, client);
    const cacheKey = this.deps.keyCrypto.cacheKey(credential);
    // Only a well-formed credential of this kind was ever cached, so a hit needs no shape or checksum test.
    const cached = this.cached(kind, cacheKey);
    // An expired key answers like any invalid key, counted like an unknown one: decided from the cached
    // expiry and the clock, with no lookup (the entry stays, so later uses are refused the same way).
    if (cached) return this.expired(cached) ? this.fail(client, null, kind) : this.settle(cached, client, kind);
    const wellFormed = kind === 'SESSION' ? isWellFormedSessionToken(credential) : isWellFormedAccessKey(credential);
    if (!wellFormed) return this.malformed(kind, credential, client);
    return this.resolve(kind, credential, cacheKey, client);
  }

  private expired(principal: Principal): boolean {
    return principal.keyExpiresAtMs !== undefined && principal.keyExpiresAtMs <= (this.deps.clock ?? systemClock).now();
  }

  private malformed(kind: 'ACCESS_KEY' | 'SESSION', credential: string, client: string): AuthResult {
    if (kind === 'SESSION') return this.fail(client, MALFORMED_TOKEN);
    return this.fail(
      client,
      credential.startsWith(SESSION_TOKEN_PREFIX)
        ? `${MALFORMED_KEY} Session tokens go in Authorization: Bearer.`
        : MALFORMED_KEY,
    );
  }

  private settle(principal: Principal | null, client: string, kind: 'ACCESS_KEY' | 'SESSION'): AuthResult {
    if (!principal) return this.fail(client, null, kind);
    const usedKeyDigest = principal.currentKeyDigest ?? principal.previousKeyDigest;
    if (usedKeyDigest !== undefined) this.deps.accessKeys.markUsed(usedKeyDigest);
    return { ok: true, principal };
  }

  /** Counts the failure for the rate limit; null `malformed` means a well-formed credential that didn't work. */
  private fail(client: string, malformed: string | null, kind?: 'ACCESS_KEY' | 'SESSION'): AuthResult {
    this.deps.rateLimiter.recordFailure(client);
    return this.refusal(malformed, kind);
  }

  private refusal(malformed: string | null, kind: 'ACCESS_KEY' | 'SESSION' = 'ACCESS_KEY'): AuthResult {
    if (malformed !== null) return { ok: false, reason: 'MALFORMED_CREDENTIALS', message: malformed };
    return {
      ok: false,
      reason: 'INVALID_CREDENTIALS',
      message: kind === 'SESSION' ? SESSION_ENDED : CREDENTIALS_ENDED,
    };
  }
}

/** The kind of credential the headers present (for metrics): null without one, UNKNOWN when they are malformed. */
export function presentedKind(request: RequestHeaders): 'ACCESS_KEY' | 'SESSION' | 'UNKNOWN' | null {
  const presented = presentedCredential(request);
  if (presented === null) return null;
  return presented.kind === 'MALFORMED' ? 'UNKNOWN' : presented.kind;
}
