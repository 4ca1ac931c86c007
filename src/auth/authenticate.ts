import type { IncomingHttpHeaders } from 'node:http';
import type { AccessKeyService } from '../access-keys/access-key.service';
import type { SessionService } from '../sessions/session.service';
import { isWellFormedAccessKey, isWellFormedSessionToken, SESSION_TOKEN_PREFIX } from './key-format';
import type { Principal } from './principal';
import type { AuthRateLimiter } from './rate-limit';

export type AuthFailureReason = 'MALFORMED_CREDENTIALS' | 'INVALID_CREDENTIALS';

export type AuthResult =
  | { readonly ok: true; readonly principal: Principal | null }
  | { readonly ok: false; readonly reason: AuthFailureReason; readonly message: string }
  | { readonly ok: false; readonly reason: 'RATE_LIMITED'; readonly retryAfterSeconds: number };

const MALFORMED_KEY =
  'The access key is malformed: check that no characters were lost or added when copying it ' +
  '(it starts with cak_ and is 42 characters long).';
const MALFORMED_TOKEN = 'The session token is malformed: check that no characters were lost or added when copying it.';
const INVALID = 'The credentials are not valid: the key may have been replaced or expired, or its user deactivated.';

type Presented =
  | { kind: 'ACCESS_KEY' | 'SESSION'; credential: string }
  | { kind: 'MALFORMED'; message: string }
  | null;

/** The credential in X-Access-Key or `Authorization: Bearer`; never the query string. */
function presentedCredential(headers: IncomingHttpHeaders): Presented {
  const keyHeader = headers['x-access-key'];
  const authorization = headers.authorization;
  if (keyHeader === undefined && authorization === undefined) return null;
  if (Array.isArray(keyHeader)) return { kind: 'MALFORMED', message: 'Send X-Access-Key once.' };
  if (keyHeader !== undefined && authorization !== undefined) {
    return { kind: 'MALFORMED', message: 'Send credentials in X-Access-Key or in Authorization, not both.' };
  }
  if (keyHeader !== undefined) return { kind: 'ACCESS_KEY', credential: keyHeader.trim() };
  const match = /^\s*Bearer\s+(.*)$/is.exec(authorization ?? '');
  if (!match) return { kind: 'MALFORMED', message: 'The Authorization header must be "Bearer <access key or session token>".' };
  const credential = match[1].trim();
  return { kind: credential.startsWith(SESSION_TOKEN_PREFIX) ? 'SESSION' : 'ACCESS_KEY', credential };
}

/**
 * Turns a request's headers into its principal. A blocked client address is refused from memory, a
 * malformed credential from its shape and checksum: neither costs a lookup. Every other failure gets one
 * answer, so nothing is learned about which keys or sessions exist.
 */
export class Authenticator {
  constructor(
    private readonly deps: { accessKeys: AccessKeyService; sessions: SessionService; rateLimiter: AuthRateLimiter },
  ) {}

  async authenticate(headers: IncomingHttpHeaders, client: string): Promise<AuthResult> {
    const retryAfterSeconds = this.deps.rateLimiter.retryAfterSeconds(client);
    if (retryAfterSeconds > 0) return { ok: false, reason: 'RATE_LIMITED', retryAfterSeconds };
    const presented = presentedCredential(headers);
    if (presented === null) return { ok: true, principal: null };

    let principal: Principal | null = null;
    let malformed: string | null = null;
    if (presented.kind === 'MALFORMED') malformed = presented.message;
    else if (presented.kind === 'SESSION') {
      if (isWellFormedSessionToken(presented.credential)) principal = await this.deps.sessions.authenticate(presented.credential);
      else malformed = MALFORMED_TOKEN;
    } else if (isWellFormedAccessKey(presented.credential)) {
      principal = await this.deps.accessKeys.authenticate(presented.credential);
    } else {
      malformed = presented.credential.startsWith(SESSION_TOKEN_PREFIX) ? `${MALFORMED_KEY} Session tokens go in Authorization: Bearer.` : MALFORMED_KEY;
    }
    if (principal) return { ok: true, principal };
    this.deps.rateLimiter.recordFailure(client);
    if (malformed !== null) return { ok: false, reason: 'MALFORMED_CREDENTIALS', message: malformed };
    return { ok: false, reason: 'INVALID_CREDENTIALS', message: INVALID };
  }
}

