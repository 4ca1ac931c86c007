import path from 'node:path';

import type { FastifyInstance } from 'fastify';

import { filesIn, projectRoot, serveFiles } from './static';

/**
 * The admin console (`public/admin/`): static ES modules that talk only to the public GraphQL API. The page is
 * at `/admin` and `/admin/`; its modules and styles at `/admin/<file>`.
 */
export function registerAdminConsole(app: FastifyInstance): void {
  const dir = path.join(projectRoot(), 'public', 'admin');
  const page = path.join(dir, 'index.html');
  serveFiles(app, { '/admin': page, ...filesIn({ dir, urlPrefix: '/admin' }), '/admin/': page });
}
