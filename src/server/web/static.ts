import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import type { FastifyInstance } from 'fastify';

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

/**
 * Serves a fixed set of files (URL -> path) read once at startup: nothing is resolved from the request path, so
 * no request can reach any other file. Answers carry an ETag and `no-cache`, so a browser revalidates (304) and
 * never runs an old module beside a new one after an upgrade.
 */
export function serveFiles(app: FastifyInstance, files: Record<string, string>): void {
  for (const [url, file] of Object.entries(files)) {
    const body = fs.readFileSync(file);
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    app.get(url, async (request, reply) => {
      void reply
        .type(type)
        .header('cache-control', 'no-cache')
        .header('etag', etag)
        .header('x-content-type-options', 'nosniff');
      if (type.startsWith('text/html')) void reply.header('content-security-policy', PAGE_CONTENT_SECURITY_POLICY);
      if (request.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.send(body);
    });
  }
}
