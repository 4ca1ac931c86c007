import type { IncomingHttpHeaders } from 'node:http';
import type { AccessKeyService } from '../access-keys/access-key.service';
import { isWellFormedAccessKey } from './key-format';
import type { Principal } from './principal';

export type AuthFailureReason = 'MALFORMED_CREDENTIALS' | 'INVALID_CREDENTIALS';

export type AuthResult =
  | { readonly ok: true; readonly principal: Principal | null }
  | { readonly ok: false; readonly reason: AuthFailureReason; readonly message: string };

const MALFORMED_MESSAGE =
  'The access key is malformed: check that no characters were lost or added when copying it ' +
  '(it starts with cak_ and is 42 characters long).';
const INVALID_MESSAGE = 'The credentials are not valid: the key may have been replaced, or its user deactivated.';

function malformed(message = MALFORMED_MESSAGE): AuthResult {
  return { ok: false, reason: 'MALFORMED_CREDENTIALS', message };
}

type Presented = { credential: string } | { problem: string } | null;

/** The credential in X-Access-Key or `Authorization: Bearer`; never the query string. */
function presentedCredential(headers: IncomingHttpHeaders): Presented {
  const keyHeader = headers['x-access-key'];
  const authorization = headers.authorization;
  if (keyHeader === undefined && authorization === undefined) return null;
  if (Array.isArray(keyHeader)) return { problem: 'Send X-Access-Key once.' };
  if (keyHeader !== undefined && authorization !== undefined) {
    return { problem: 'Send credentials in X-Access-Key or in Authorization, not both.' };
  }
  if (keyHeader !== undefined) return { credential: keyHeader.trim() };
  const match = /^\s*Bearer\s+(.*)$/is.exec(authorization ?? '');
  if (!match) return { problem: 'The Authorization header must be "Bearer <access key>".' };
  return { credential: match[1].trim() };
}

/**
 * Turns a request's headers into its principal. A malformed key is refused from its shape and checksum
 * alone, before any database work; every other failure gets one answer, so nothing is learned about keys.
 */
export class Authenticator {
  constructor(private readonly deps: { accessKeys: AccessKeyService }) {}

  async authenticate(headers: IncomingHttpHeaders): Promise<AuthResult> {
    const presented = presentedCredential(headers);
    if (presented === null) return { ok: true, principal: null };
    if ('problem' in presented) return malformed(presented.problem);
    if (!isWellFormedAccessKey(presented.credential)) return malformed();
    const principal = await this.deps.accessKeys.authenticate(presented.credential);
    if (!principal) return { ok: false, reason: 'INVALID_CREDENTIALS', message: INVALID_MESSAGE };
    return { ok: true, principal };
  }
}
