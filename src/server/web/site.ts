import path from 'node:path';

import type { FastifyInstance } from 'fastify';

import { projectRoot, serveFiles } from './static';

/**
 * The site's own front door: `GET /` sends a browser to the admin console (there is nothing else to see at the
 * root), and the icon every browser asks for exists (`/favicon.svg`, which pages link; `/favicon.ico` redirects
 * to it for clients that ask by the old name).
 */
export function registerSite(app: FastifyInstance): void {
  app.get('/', async (_request, reply) => reply.redirect('/admin/', 302));
  serveFiles(app, { '/favicon.svg': path.join(projectRoot(), 'public', 'favicon.svg') });
  app.get('/favicon.ico', async (_request, reply) => reply.redirect('/favicon.svg', 301));
}
