import path from 'node:path';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { filesIn, PAGE_CONTENT_SECURITY_POLICY, projectRoot, serveFiles } from './static';

const ASSETS = '/explorer-assets';

const DEFAULT_QUERY = `# Paste your access key into the X-Access-Key header below, then run this.
{
  me {
    id
    email
    role
    organization { name }
  }
}
`;

/**
 * GraphiQL, with React and its styles served from npm packages by this service: it works offline. Its start-up
 * (`public/explorer/explorer.js`) keeps nothing in browser storage and explains refused requests in words.
 */
function page(): string {
  const config = JSON.stringify({
    defaultQuery: DEFAULT_QUERY,
    defaultHeaders: JSON.stringify({ 'X-Access-Key': '' }, null, 2),
  });
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>crm-access GraphQL explorer</title>
  <link rel="icon" href="/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="${ASSETS}/graphiql.min.css">
  <link rel="stylesheet" href="${ASSETS}/explorer.css">
</head>
<body>
  <p id="explorer-status" role="status" hidden></p>
  <div id="graphiql">Loading the explorer...</div>
  <script src="${ASSETS}/react.production.min.js"></script>
  <script src="${ASSETS}/react-dom.production.min.js"></script>
  <script src="${ASSETS}/graphiql.min.js"></script>
  <script id="explorer-config" type="application/json">${config.replace(/</g, '\\u003c')}</script>
  <script type="module" src="${ASSETS}/explorer.js"></script>
</body>
</html>
`;
}

/**
 * True for a browser opening /graphql: a GET (or its HEAD) that accepts text/html and carries no `query` parameter.
 * The method is read first: a POST costs one comparison.
 */
export function wantsExplorer(request: FastifyRequest): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  const query = request.query as Record<string, unknown> | undefined;
  return !query?.query && /text\/html/.test(request.headers.accept ?? '');
}

/**
 * Sends the explorer's HTML page, with its Content-Security-Policy (inline styles allowed, scripts of this origin only).
 */
export function sendExplorer(reply: FastifyReply): FastifyReply {
  return (
    reply
      .type('text/html; charset=utf-8')
      // GraphiQL and CodeMirror set inline styles; scripts stay this origin's files only.
      .header('content-security-policy', `${PAGE_CONTENT_SECURITY_POLICY}; style-src 'self' 'unsafe-inline'`)
      .send(page())
  );
}

/** A file inside an installed package that the package's "exports" does not list (React's UMD builds). */
function packageFile(name: string, file: string): string {
  return path.join(path.dirname(require.resolve(`${name}/package.json`)), file);
}

/** Serves the explorer's scripts and styles (GraphiQL, React, the start-up script) under its assets path. */
export function registerExplorerAssets(app: FastifyInstance): void {
  serveFiles(app, {
    [`${ASSETS}/graphiql.min.js`]: require.resolve('graphiql/graphiql.min.js'),
    [`${ASSETS}/graphiql.min.css`]: require.resolve('graphiql/graphiql.min.css'),
    [`${ASSETS}/react.production.min.js`]: packageFile('react', 'umd/react.production.min.js'),
    [`${ASSETS}/react-dom.production.min.js`]: packageFile('react-dom', 'umd/react-dom.production.min.js'),
    ...filesIn({ dir: path.join(projectRoot(), 'public', 'explorer'), urlPrefix: ASSETS }),
  });
}
