import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

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
 * Serves a fixed set of files read once at startup: nothing is resolved from the request path, so no
 * request can reach any other file.
 */
export function serveFiles(app: FastifyInstance, files: Record<string, string>): void {
  for (const [url, file] of Object.entries(files)) {
    const body = fs.readFileSync(file);
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    app.get(url, async (_request, reply) => {
      void reply.type(type).header('cache-control', 'public, max-age=300').header('x-content-type-options', 'nosniff');
      // Pages may load only this origin's files and may not be framed (no clickjacking of Reveal or Regenerate).
      if (type.startsWith('text/html')) void reply.header('content-security-policy', "default-src 'self'; frame-ancestors 'none'");
      return reply.send(body);
    });
  }
}
