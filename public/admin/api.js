// @ts-check
/// <reference lib="dom" />
import { fromNow } from './dom.js';

/**
 * The console's only way to the service: POST /graphql with the signed-in credential, and every failure turned
 * into an ApiError whose message is a sentence for a person (never the raw answer).
 *
 * Credentials: a session token (from email and password) is kept in this tab's sessionStorage, so a reload stays
 * signed in; it ends at sign-out, after SESSION_TTL, or when the password changes. An access key is as strong as
 * a password and lives until regenerated, so it is kept in memory only: a reload asks for it again.
 */

/**
 * @typedef {'ADMIN' | 'MANAGER' | 'MEMBER'} Role
 * @typedef {{ kind: 'session'; token: string } | { kind: 'key'; key: string }} Credential
 * @typedef {{
 *   message?: string;
 *   extensions?: { code?: string; field?: string; reason?: string; retryAfterSeconds?: number; requestId?: string };
 * }} GraphQLError
 */

const SESSION_ITEM = 'crm-access.session';

/** @type {Credential | null} */
let memoryKey = null;

/** The credential requests are sent with, or null when nobody is signed in. */
export function credential() {
  if (memoryKey) return memoryKey;
  const token = sessionStorage.getItem(SESSION_ITEM);
  return token ? /** @type {Credential} */ ({ kind: 'session', token }) : null;
}

/**
 * Signs this tab in with a credential (replacing any other).
 * @param {Credential} next
 */
export function useCredential(next) {
  forgetCredential();
  if (next.kind === 'session') sessionStorage.setItem(SESSION_ITEM, next.token);
  else memoryKey = next;
}

/** Forgets the credential and everything else this console put in browser storage. */
export function forgetCredential() {
  memoryKey = null;
  sessionStorage.removeItem(SESSION_ITEM);
}

/**
 * @param {Credential | null} current
 * @returns {Record<string, string>}
 */
function credentialHeaders(current) {
  if (current?.kind === 'session') return { authorization: `Bearer ${current.token}` };
  if (current?.kind === 'key') return { 'x-access-key': current.key };
  return {};
}

/** A failed request, explained in words. `code` is the API's error code, or NETWORK / UNEXPECTED. */
export class ApiError extends Error {
  /**
   * @param {{ message: string; code: string; field?: string; status?: number; lockedUntil?: Date; requestId?: string }} params
   */
  constructor(params) {
    super(params.message);
    this.name = 'ApiError';
    this.code = params.code;
    this.field = params.field;
    this.status = params.status;
    /** Set for RATE_LIMITED: when the address may try again. */
    this.lockedUntil = params.lockedUntil;
    this.requestId = params.requestId;
  }
}

/** @type {(error: ApiError) => void} */
let onCredentialRefused = () => {};

/**
 * Registers what happens when the signed-in credential stops working (HTTP 401 on a request that carried it):
 * the app signs the tab out and asks to sign in again.
 * @param {(error: ApiError) => void} handler
 */
export function whenCredentialRefused(handler) {
  onCredentialRefused = handler;
}

const MESSAGES = /** @type {Record<string, string>} */ ({
  NOT_FOUND: 'This user does not exist, or you may not see them.',
  FORBIDDEN: 'You do not have permission to do this. Ask an admin of your organization if you need it.',
  SERVICE_UNAVAILABLE: 'The service is briefly unavailable. Try again in a moment.',
});

/**
 * @param {{ error: GraphQLError | undefined; status: number; headers: Headers }} answer the first error, if any
 * @returns {ApiError}
 */
function toApiError({ error, status, headers }) {
  const code = error?.extensions?.code ?? (status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'UNEXPECTED');
  const requestId = error?.extensions?.requestId ?? headers.get('x-request-id') ?? undefined;
  if (code === 'RATE_LIMITED') {
    const seconds = Number(headers.get('retry-after') ?? error?.extensions?.retryAfterSeconds ?? 60);
    const lockedUntil = new Date(Date.now() + seconds * 1000);
    const message =
      `Too many failed sign-ins came from your network address, so it is locked until ${lockedUntil.toLocaleTimeString()} ` +
      `(${fromNow(lockedUntil)}). Until then every request from it is refused, also with a correct password or key.`;
    return new ApiError({ message, code, status, lockedUntil });
  }
  if (code === 'INTERNAL_SERVER_ERROR' || (status >= 500 && code !== 'SERVICE_UNAVAILABLE')) {
    const quote = requestId ? ` If it happens again, tell your administrator and quote request id ${requestId}.` : '';
    return new ApiError({ message: `Something went wrong on the server.${quote}`, code, status, requestId });
  }
  const message =
    MESSAGES[code] ??
    (typeof error?.message === 'string' && error.message
      ? error.message
      : `The server refused the request (HTTP ${status}).`);
  return new ApiError({ message, code, field: error?.extensions?.field, status, requestId });
}

/**
 * Runs one GraphQL operation with the signed-in credential.
 * @param {string} query
 * @param {Record<string, unknown>} [variables]
 * @returns {Promise<any>} the `data` of the answer
 * @throws {ApiError} when the answer has any error, the credential is refused (401: the tab is signed out, see
 *   whenCredentialRefused), the address is locked (429), or the server cannot be reached
 */
export function gql(query, variables = {}) {
  return send({ query, variables, credential: credential(), refusalSignsOut: true });
}

/**
 * Runs one GraphQL operation with a given credential, or none: a sign-in trying a key or a password, a sign-out
 * ending its session. A refusal is only thrown; it signs nothing out.
 * @param {{ query: string; variables?: Record<string, unknown>; credential: Credential | null }} params
 * @returns {Promise<any>} the `data` of the answer
 * @throws {ApiError} as gql()
 */
export function gqlAs({ query, variables = {}, credential: given }) {
  return send({ query, variables, credential: given, refusalSignsOut: false });
}

/**
 * @param {{ query: string; variables: Record<string, unknown>; credential: Credential | null; refusalSignsOut: boolean }} params
 */
async function send({ query, variables, credential: sent, refusalSignsOut }) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...credentialHeaders(sent) },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError({
      message: 'The server could not be reached. Check your connection and try again.',
      code: 'NETWORK',
    });
  }
  /** @type {{ data?: any; errors?: GraphQLError[] } | null} */
  const body = await response.json().catch(() => null);
  const first = body?.errors?.[0];
  if (response.ok && body && !first) return body.data;
  const error = toApiError({ error: first, status: response.status, headers: response.headers });
  // Only the signed-in credential's refusal signs the tab out; a key tried at sign-in is just refused.
  if (response.status === 401 && refusalSignsOut && sent) onCredentialRefused(error);
  throw error;
}
