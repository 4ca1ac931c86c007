import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { constants as zlibConstants, gzip } from 'node:zlib';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Negotiator from 'negotiator';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * What a page of this service may load: its own files only (no CDN, no inline script), data: images and
 * fonts (GraphiQL's fonts are data: URLs), and it may not be framed (no clickjacking of Reveal or Regenerate).
 */
export const PAGE_CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** The folder with package.json above this file, whether it runs from src/ (tests) or dist/src/ (built). */
export function projectRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json not found above ' + __dirname);
    dir = parent;
  }
  return dir;
}

/**
 * The servable files (by extension: html, js, css, svg) directly inside `dir`, as URL -> file under `urlPrefix`.
 * Read when the app is built, so the set of URLs is fixed from then on.
 */
export function filesIn(params: { dir: string; urlPrefix: string }): Record<string, string> {
  const files: Record<string, string> = {};
  for (const name of fs.readdirSync(params.dir).sort()) {
    if (TYPES[path.extname(name)]) files[`${params.urlPrefix}/${name}`] = path.join(params.dir, name);
  }
  return files;
}

/** Files smaller than this (bytes) go as they are: gzip's header and a round trip of negotiation outweigh them. */
const GZIP_FROM_BYTES = 1024;

const gzipAsync = promisify(gzip);

/**
 * One servable file: its bytes, read once, and its gzip form, made on the first request that accepts it (in
 * zlib's thread pool, off the event loop) and kept. Each form has a strong ETag of its own (RFC 9110 8.8.3: a
 * representation's content coding is part of it).
 */
class StaticFile {
  readonly type: string;
  readonly etag: string;
  /** Whether a gzip form is offered, and so whether answers vary by Accept-Encoding. */
  readonly gzipped: boolean;
  private gzipForm: Promise<Buffer> | undefined;

  constructor(
    file: string,
    readonly body: Buffer = fs.readFileSync(file),
  ) {
    this.type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    this.etag = createHash('sha256').update(body).digest('base64url').slice(0, 27);
    this.gzipped = body.length >= GZIP_FROM_BYTES;
  }

  /** The gzip form (level 9: made once a process). A failure is not kept: the next request tries again. */
  gzip(): Promise<Buffer> {
    this.gzipForm ??= gzipAsync(this.body, { level: zlibConstants.Z_BEST_COMPRESSION }).catch((error: unknown) => {
      this.gzipForm = undefined;
      throw error;
    });
    return this.gzipForm;
  }
}

/**
 * Serves a fixed set of files (URL -> path) read once at startup: nothing is resolved from the request path, so
 * no request can reach any other file. Answers carry an ETag and `no-cache`, so a browser revalidates (304) and
 * never runs an old module beside a new one after an upgrade. A client that accepts gzip (Accept-Encoding, with
 * its q-values, read by the `negotiator` package) gets files from 1 KiB on gzipped: the explorer's 3.5 MB
 * script goes as 0.7 MB.
 */
export function serveFiles(app: FastifyInstance, files: Record<string, string>): void {
  for (const [url, file] of Object.entries(files)) {
    const served = new StaticFile(file);
    app.get(url, (request, reply) => sendFile(request, reply, served));
  }
}

async function sendFile(request: FastifyRequest, reply: FastifyReply, file: StaticFile): Promise<FastifyReply> {
  void reply.type(file.type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff');
  if (file.type.startsWith('text/html')) void reply.header('content-security-policy', PAGE_CONTENT_SECURITY_POLICY);
  if (file.gzipped) {
    // Appended: @fastify/cors may have set `Vary: Origin` already.
    const vary = reply.getHeader('vary');
    void reply.header('vary', vary ? `${String(vary)}, Accept-Encoding` : 'Accept-Encoding');
    if (new Negotiator(request.raw).encoding(['gzip', 'identity']) === 'gzip') {
      const etag = `"${file.etag}-gzip"`;
      if (request.headers['if-none-match'] === etag) return reply.code(304).header('etag', etag).send();
      const body = await file.gzip().catch((error: unknown) => {
        request.log.warn({ err: error }, 'gzip of a static file failed: sent as it is');
        return undefined;
      });
      if (body) return reply.header('etag', etag).header('content-encoding', 'gzip').send(body);
    }
  }
  const etag = `"${file.etag}"`;
  void reply.header('etag', etag);
  if (request.headers['if-none-match'] === etag) return reply.code(304).send();
  return reply.send(file.body);
}
