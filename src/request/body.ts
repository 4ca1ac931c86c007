import { isUtf8 } from 'node:buffer';

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { createScanner } from 'jsonc-parser';

import { isHeaderName } from '../header-name';

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

/** A second charset parameter after a first (a quoted value holding "; charset=" counts too: no client sends one). */
const TWO_CHARSETS = /;\s*charset\s*=[^]*;\s*charset\s*=/i;
const CONTENT_TYPE = 'content-type';

/**
 * How many Content-Type lines the request sent. Node keeps only the first in `headers`, so only the raw list
 * (name, value, name, value, ...) shows a repetition; as the scan of credential headers in authenticate.ts, names
 * are compared by isHeaderName, which allocates nothing whatever the spelling.
 */
function contentTypeLines(rawHeaders: readonly string[]): number {
  let lines = 0;
  for (let index = 0; index < rawHeaders.length; index += 2) {
    if (isHeaderName(rawHeaders[index], CONTENT_TYPE)) lines++;
  }
  return lines;
}

/**
 * A 400 BodyError for a Content-Type that reads two ways, else null: sent on two lines, or naming its charset
 * twice. Fastify, Apollo's CSRF prevention and the charset check read the first, a proxy in front may read the
 * last (as with a repeated credential header, refused for the same reason). Costs nothing without a Content-Type.
 * Checked in onRequest by every route that reads a body: /graphql and the secret scanning webhook.
 */
export function ambiguousContentTypeError(request: FastifyRequest): BodyError | null {
  const contentType = request.headers['content-type'];
  if (contentType === undefined) return null;
  if (contentTypeLines(request.raw.rawHeaders) > 1) {
    return new BodyError('Send Content-Type once: this request has more than one.', 400);
  }
  if (TWO_CHARSETS.test(contentType)) {
    return new BodyError('Name the charset once in Content-Type (application/json; charset=utf-8).', 400);
  }
  return null;
}

const PROTOTYPE_KEYS = 'The body may not hold a "__proto__" key or a "constructor" key with "prototype" in it.';

/**
 * jsonc-parser's token kinds (its `SyntaxKind`, a const enum that isolatedModules cannot read from its typings):
 * the ones the walk below tells apart.
 */
const TOKEN = { openBrace: 1, closeBrace: 2, openBracket: 3, closeBracket: 4, comma: 5, string: 10, end: 17 } as const;

/**
 * The first key that some object of `text` names twice, compared as the strings JSON.parse makes of them (so
 * "query" and "\u0071uery" are one key), with whether that object is the body's outermost one; null when every
 * object names each key once. Only asked of text JSON.parse took. A loop over jsonc-parser's tokens with a stack
 * of its own, not its visitor, whose recursive descent overflowed the call stack on a few thousand nested arrays
 * (a RangeError, which Fastify's parser reported as a body with a "__proto__" key): JSON.parse takes any depth,
 * so this must too.
 */
export function repeatedJsonKey(text: string): { key: string; outermost: boolean } | null {
  const scanner = createScanner(text, true);
  // Each open object's keys so far, null for an open array; innermost last.
  const open: Array<Set<string> | null> = [];
  let objects = 0;
  // The next string token is a key of the innermost object (after its "{" or a ",").
  let atKey = false;
  for (let token: number = scanner.scan(); token !== TOKEN.end; token = scanner.scan()) {
    if (token === TOKEN.openBrace) {
      open.push(new Set());
      objects++;
      atKey = true;
    } else if (token === TOKEN.openBracket) {
      open.push(null);
      atKey = false;
    } else if (token === TOKEN.closeBrace || token === TOKEN.closeBracket) {
      if (open.pop()) objects--;
      atKey = false;
    } else if (token === TOKEN.comma) {
      atKey = open.length > 0 && open[open.length - 1] !== null;
    } else if (token === TOKEN.string && atKey) {
      const keys = open[open.length - 1]!;
      const key = scanner.getTokenValue();
      if (keys.has(key)) return { key, outermost: objects === 1 };
      keys.add(key);
      atKey = false;
    }
  }
  return null;
}

/** The fields of a GraphQL-over-HTTP body, named in the answer when repeated there. */
const BODY_FIELDS = new Set(['query', 'operationName', 'variables', 'extensions']);

/**
 * A 400 BodyError for a body some object of which names one key twice, else null. JSON.parse keeps the last
 * value, a proxy, a WAF or a log reader in front may keep the first (RFC 8259 4: such a body's meaning is
 * "unpredictable"), as with a GET naming `query` twice, which Apollo refuses.
 */
function repeatedKeyError(text: string): BodyError | null {
  const repeated = repeatedJsonKey(text);
  if (!repeated) return null;
  const what =
    repeated.outermost && BODY_FIELDS.has(repeated.key)
      ? `names "${repeated.key}" twice`
      : 'holds an object that names one key twice';
  return new BodyError(`The body ${what}: send each key of an object once.`, 400);
}

/**
 * The 400's words for a GET's query string whose `variables` or `extensions` (JSON, as Apollo reads them) holds an
 * object naming one key twice, else null: the same two readings as a body's (repeatedKeyError). `search` is the
 * query string Apollo reads (searchOf); a value that is not JSON is left to Apollo's own 400.
 */
export function repeatedKeyInQueryString(search: string): string | null {
  if (!search) return null;
  const params = new URLSearchParams(search);
  for (const name of ['variables', 'extensions']) {
    for (const value of params.getAll(name)) {
      if (!isJson(value)) continue;
      if (repeatedJsonKey(value)) return `"${name}" holds an object that names one key twice: send each key once.`;
    }
  }
  return null;
}

/** Whether `text` is JSON at all (only asked of a body Fastify's parser refused). */
function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replaces Fastify's JSON parser with one that first checks the body's encoding, charset and UTF-8 bytes, and
 * removes its text/plain parser: a text/plain body is not JSON, so it is the 415 that the form types and
 * application/graphql get (unsupportedMediaTypeMessage), not a body handed to Apollo, whose CSRF prevention then
 * refused it in words about cross-site request forgery.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    const refusal = bodyEncodingError(request) ?? charsetError(request);
    if (refusal) return done(refusal, undefined);
    if (!isUtf8(body)) return done(new BodyError('The body is not valid UTF-8: send JSON encoded as UTF-8.', 400));
    const text = body.toString('utf8');
    void parseJson(request, text, (error, parsed) => {
      // Fastify refuses prototype-poisoning keys in words meant for broken JSON: say which keys instead.
      if (error && isJson(text)) return done(new BodyError(PROTOTYPE_KEYS, 400), undefined);
      if (error) return done(error, undefined);
      const repeated = repeatedKeyError(text);
      if (repeated) return done(repeated, undefined);
      done(null, parsed);
    });
  });
}

/** The 415 for a content type no parser takes, in words: what to send instead. */
export function unsupportedMediaTypeMessage(request: FastifyRequest): string {
  const contentType = request.headers['content-type']?.split(';')[0].trim();
  return `Send the request body as JSON (Content-Type: application/json)${contentType ? `, not ${contentType}` : ''}.`;
}
