import { createHash, type KeyObject, verify } from 'node:crypto';

import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { DataSource } from 'typeorm';

import type { LeakedToken, LeakReportService } from '../access-keys/leak-report.service';
import { LeakReportSource } from '../access-keys/leak-report.types';
import { ActorKind } from '../audit/audit-event.entity';
import type { AuthRateLimiter } from '../rate-limiting/rate-limit';
import { ambiguousContentTypeError, bodyEncodingError } from '../request/body';
import { clientAddress } from '../request/client-address';
import { loadGithubScanningKeys } from './github-keys';

export const GITHUB_SECRET_SCANNING_PATH = '/secret-scanning/github';
/** Larger messages answer 413 before they are read further (GitHub batches matches; 64 KiB holds hundreds). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Matches per message at most; a longer list answers 400. */
export const MAX_MATCHES = 1000;
/** How long the digest of a processed message is kept to refuse the same message again. */
export const MESSAGE_RETENTION_DAYS = 30;

/** One match of GitHub's message: the token, the pattern's type name, where it was found. */
interface Match {
  readonly token: string;
  readonly type: string;
  readonly url: string;
  readonly source: string;
}

/** The partner program's per-token feedback (GitHub's "Provide feedback for false positives"). */
export interface TokenLabel {
  readonly token_raw: string;
  readonly token_type: string;
  readonly label: 'true_positive' | 'false_positive';
}

/** The message's matches, or null when it is not the program's JSON array of `{token, type, url, source}`. */
function parseMatches(body: Buffer): Match[] | null {
  let document: unknown;
  try {
    document = JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
  if (!Array.isArray(document) || document.length === 0 || document.length > MAX_MATCHES) return null;
  const matches: Match[] = [];
  for (const item of document as Array<Record<string, unknown> | null>) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return null;
    const { token, type, url, source } = item;
    if (typeof token !== 'string' || typeof type !== 'string') return null;
    if (
      (url !== undefined && url !== null && typeof url !== 'string') ||
      (source !== undefined && source !== null && typeof source !== 'string')
    ) {
      return null;
    }
    matches.push({ token, type, url: url ?? '', source: source ?? '' });
  }
  return matches;
}

/** Where GitHub found a token, for the audit log and the profile: its URL (may be empty) and its source. */
function locationOf(match: Match): string {
  const source = match.source || 'unknown source';
  return match.url ? `${match.url} (GitHub ${source})` : `GitHub ${source}`;
}

/** Standard base64 with its padding, nothing else: the only spelling of a signature accepted. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The signature header's bytes, or null unless it is exactly one standard base64 value that decodes back to
 * itself. Buffer.from(…, 'base64') alone skips characters outside the alphabet and stops reading at padding,
 * so a header holding the signature and anything after it (a second header line joined with ", ") would pass.
 */
function decodeSignature(header: string | string[] | undefined): Buffer | null {
  if (typeof header !== 'string' || !BASE64.test(header)) return null;
  const signature = Buffer.from(header, 'base64');
  return signature.toString('base64') === header ? signature : null;
}

/**
 * ECDSA P-256 / SHA-256 over the raw body, signature base64 of DER (the partner program's scheme), by any of
 * the keys listed under the message's key identifier.
 */
function signatureIsValid(params: { body: Buffer; keys: readonly KeyObject[]; signature: Buffer }): boolean {
  return params.keys.some((key) => {
    try {
      return verify('sha256', params.body, { key, dsaEncoding: 'der' }, params.signature);
    } catch {
      // A signature that is not DER at all: as bad as a wrong one.
      return false;
    }
  });
}

function refuse(reply: FastifyReply, params: { status: number; code: string; message: string }): FastifyReply {
  return reply.code(params.status).send({ errors: [{ message: params.message, extensions: { code: params.code } }] });
}

/**
 * POST /secret-scanning/github: GitHub's secret scanning partner program reports tokens it found in public
 * code and packages. Only when SECRET_SCANNING_GITHUB_KEYS names GitHub's public keys (see
 * loadGithubScanningKeys, which throws ConfigError for a bad file at startup); otherwise the route does
 * not exist (404).
 *
 * A message is acted on only when it is signed (Github-Public-Key-Identifier, Github-Public-Key-Signature)
 * over its raw bytes by one of those keys, is at most MAX_MESSAGE_BYTES, and was not processed before (its
 * SHA-256 is kept MESSAGE_RETENTION_DAYS in `secret_scanning_messages`, inserted in the same transaction as
 * the revocations, so a message whose processing failed may be sent again). Refusals change nothing:
 * 401 unsigned, unknown key or bad signature (counted as failed authentications of the address, like a bad
 * key: AUTH_FAILURE_LIMIT then 429), 413 too large, 400 not the program's JSON or a Content-Type that reads two
 * ways (ambiguousContentTypeError, as on /graphql), 409 already processed.
 * Every token that is a current or grace-period key is revoked at once, and every token of a session not ended
 * and not expired is ended at once (LeakReportService.revoke, all in the one transaction: a failure changes
 * nothing), and labelled `true_positive` with the type GitHub sent; every other token `false_positive`. The
 * answer is the program's feedback list.
 */
export function registerGithubSecretScanning(
  app: FastifyInstance,
  params: {
    keysFile: string | null;
    services: { dataSource: DataSource; rateLimiter: AuthRateLimiter; leakReports: LeakReportService };
    /** Runs before the message is read: the app holds reports back until the secret is checked (SecretCheck). */
    onRequest?: onRequestHookHandler;
  },
): void {
  const { keysFile, services } = params;
  if (keysFile === null) return;
  const keys = loadGithubScanningKeys(keysFile);
  const { rateLimiter, leakReports, dataSource } = services;

  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const client = clientAddress(request);
    const retryAfterSeconds = rateLimiter.retryAfterSeconds(client);
    if (retryAfterSeconds > 0) {
      void reply.header('retry-after', String(retryAfterSeconds));
      return refuse(reply, {
        status: 429,
        code: 'RATE_LIMITED',
        message: `Too many refused messages from this address: try again in ${retryAfterSeconds} s.`,
      });
    }
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const keyIdentifier = request.headers['github-public-key-identifier'];
    const signature = decodeSignature(request.headers['github-public-key-signature']);
    const candidates = typeof keyIdentifier === 'string' ? keys.get(keyIdentifier) : undefined;
    if (!candidates || !signature || !signatureIsValid({ body, keys: candidates, signature })) {
      rateLimiter.recordFailure(client);
      request.log.info(
        { keyKnown: !!candidates },
        'secret scanning message refused: not signed by a configured GitHub key',
      );
      return refuse(reply, {
        status: 401,
        code: 'UNAUTHENTICATED',
        message:
          'The message must be signed by a GitHub secret scanning key (Github-Public-Key-Identifier, Github-Public-Key-Signature).',
      });
    }
    const matches = parseMatches(body);
    if (!matches) {
      return refuse(reply, {
        status: 400,
        code: 'BAD_REQUEST',
        message: `The message must be a JSON array of 1 to ${MAX_MATCHES} objects with "token" and "type" strings ("url" and "source" optional).`,
      });
    }
    const tokens: LeakedToken[] = matches.map((match) => ({ token: match.token, location: locationOf(match) }));
    const messageDigest = createHash('sha256').update(body).digest();
    const revoked = await dataSource.transaction(async (manager) => {
      // Concurrent copies of one message wait here on the primary key; the second finds the first's row.
      const inserted: unknown[] = await manager.query(
        `INSERT INTO secret_scanning_messages (digest) VALUES ($1) ON CONFLICT (digest) DO NOTHING RETURNING 1`,
        [messageDigest],
      );
      if (inserted.length === 0) return null;
      await manager.query(
        `DELETE FROM secret_scanning_messages WHERE received_at < now() - make_interval(days => $1)`,
        [MESSAGE_RETENTION_DAYS],
      );
      return leakReports.revoke(manager, {
        tokens,
        source: LeakReportSource.GITHUB_SECRET_SCANNING,
        reporter: { userId: null, kind: ActorKind.SYSTEM, ip: client, requestId: request.id },
      });
    });
    if (revoked === null) {
      request.log.info('secret scanning message refused: already processed');
      return refuse(reply, { status: 409, code: 'CONFLICT', message: 'This message was already processed.' });
    }
    leakReports.forgetRevoked(revoked);
    const revokedTokens = new Set(revoked.map((key) => key.token));
    request.log.info({ matches: matches.length, revoked: revoked.length }, 'secret scanning message processed');
    const labels: TokenLabel[] = matches.map((match) => ({
      token_raw: match.token,
      token_type: match.type,
      label: revokedTokens.has(match.token) ? 'true_positive' : 'false_positive',
    }));
    return reply.code(200).send(labels);
  };

  void app.register(async (scope) => {
    // The signature covers the raw bytes: keep them as they came, whatever the content type says.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_MESSAGE_BYTES }, (request, body, done) => {
      const refusal = bodyEncodingError(request);
      if (refusal) done(refusal, undefined);
      else done(null, body);
    });
    // A Content-Type that reads two ways (two lines, two charsets) is refused first, as /graphql refuses it: GitHub
    // sends one, and a proxy in front may read another than this route does.
    const refuseAmbiguous: onRequestHookHandler = (request, _reply, done) =>
      done(ambiguousContentTypeError(request) ?? undefined);
    const onRequest = params.onRequest ? [refuseAmbiguous, params.onRequest] : [refuseAmbiguous];
    scope.post(GITHUB_SECRET_SCANNING_PATH, { bodyLimit: MAX_MESSAGE_BYTES, onRequest }, handle);
  });
}
