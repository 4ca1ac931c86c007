import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { projectRoot, serveFiles } from './static';

/** The admin console: static files that talk only to the public GraphQL API. */
export function registerAdminConsole(app: FastifyInstance): void {
  const dir = path.join(projectRoot(), 'public', 'admin');
  serveFiles(app, {
    '/admin': path.join(dir, 'index.html'),
    '/admin/': path.join(dir, 'index.html'),
    '/admin/app.js': path.join(dir, 'app.js'),
    '/admin/styles.css': path.join(dir, 'styles.css'),
  });
}
