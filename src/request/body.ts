import { isUtf8 } from 'node:buffer';

import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * What a request body must be before it is parsed. Fastify reads neither Content-Encoding nor a JSON body's
 * charset: a gzip body answered "Body is not valid JSON", a plain body labelled gzip ran, and Latin-1 bytes
 * for "Müller" were decoded with U+FFFD in place of the "ü" and stored that way. So:
 * - a body under any Content-Encoding but identity is a 415 with `Accept-Encoding: identity` (RFC 9110
 *   15.5.16); none is decoded here, so no compressed body can expand past the body limit;
 * - JSON is UTF-8 (RFC 8259 8.1): a declared charset other than UTF-8 is a 415, bytes that are not UTF-8 a 400.
 * Every body parser of the app calls bodyEncodingError first (the secret scanning route has its own parser).
 */

/** A client's mistake in a body, answered with this status (and these headers) by the app's error handler. */
export class BodyError extends Error {
  constructor(
    message: string,
    readonly statusCode: 400 | 415,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/** A coding of the list that leaves the body as it is: identity, or an empty element (RFC 9110 5.6.1.2). */
const IDENTITY = /^\s*(?:identity)?\s*$/i;

/**
 * A BodyError for a Content-Encoding other than identity (each listed coding must be identity; empty elements,
 * and so an empty header, are no coding), else null.
 */
export function bodyEncodingError(request: FastifyRequest): BodyError | null {
  const encoding = request.headers['content-encoding'];
  if (encoding === undefined || encoding.split(',').every((coding) => IDENTITY.test(coding))) return null;
  return new BodyError(`Content-Encoding "${encoding}" is not supported: send the body uncompressed.`, 415, {
    'accept-encoding': 'identity',
  });
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;
const UTF8 = /^utf-?8$/i;

function charsetError(request: FastifyRequest): BodyError | null {
  const charset = CHARSET.exec(request.headers['content-type'] ?? '')?.[1];
  if (charset === undefined || UTF8.test(charset)) return null;
  return new BodyError(
    `The body's charset must be UTF-8 (Content-Type: application/json; charset=utf-8), not ${charset || 'an empty charset'}.`,
    415,
  );
}

const PROTOTYPE_KEYS = 'The body may not hold a "__proto__" key or a "constructor" key with "prototype" in it.';

/** Whether `text` is JSON at all (only asked of a body Fastify's parser refused). */
function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Replaces Fastify's JSON parser with one that first checks the body's encoding, charset and UTF-8 bytes. */
export function registerJsonBodyParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    const refusal = bodyEncodingError(request) ?? charsetError(request);
    if (refusal) return done(refusal, undefined);
    if (!isUtf8(body)) return done(new BodyError('The body is not valid UTF-8: send JSON encoded as UTF-8.', 400));
    const text = body.toString('utf8');
    void parseJson(request, text, (error, parsed) => {
      // Fastify refuses prototype-poisoning keys in words meant for broken JSON: say which keys instead.
      if (error && isJson(text)) return done(new BodyError(PROTOTYPE_KEYS, 400), undefined);
      done(error, parsed);
    });
  });
}

/** The 415 for a content type no parser takes, in words: what to send instead. */
export function unsupportedMediaTypeMessage(request: FastifyRequest): string {
  const contentType = request.headers['content-type']?.split(';')[0].trim();
  return `Send the request body as JSON (Content-Type: application/json)${contentType ? `, not ${contentType}` : ''}.`;
}
