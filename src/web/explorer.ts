import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { serveFiles } from './static';

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

/** GraphiQL, with React and its styles served from npm packages by this service: it works offline. */
function page(): string {
  const config = JSON.stringify({ defaultQuery: DEFAULT_QUERY, defaultHeaders: JSON.stringify({ 'X-Access-Key': '' }, null, 2) });
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>crm-access GraphQL explorer</title>
  <link rel="stylesheet" href="${ASSETS}/graphiql.min.css">
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
  <div id="graphiql">Loading the explorer...</div>
  <script src="${ASSETS}/react.production.min.js"></script>
  <script src="${ASSETS}/react-dom.production.min.js"></script>
  <script src="${ASSETS}/graphiql.min.js"></script>
  <script id="explorer-config" type="application/json">${config.replace(/</g, '\\u003c')}</script>
  <script src="${ASSETS}/explorer.js"></script>
</body>
</html>
`;
}

const BOOT = `(() => {
  const config = JSON.parse(document.getElementById('explorer-config').textContent);
  const send = GraphiQL.createFetcher({ url: location.origin + location.pathname });
  // The headers editor starts with an empty X-Access-Key to fill in; sent empty, it would be a malformed
  // credential (401, counted by the rate limit) and the schema would never load. Empty headers are left out.
  const fetcher = (params, options) => {
    const headers = Object.fromEntries(Object.entries((options && options.headers) || {}).filter(([, value]) => String(value).trim() !== ''));
    return send(params, { ...options, headers });
  };
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: config.defaultQuery,
      defaultHeaders: config.defaultHeaders,
      headerEditorEnabled: true,
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: false,
    }),
  );
})();
`;

export function wantsExplorer(request: FastifyRequest): boolean {
  const query = request.query as Record<string, unknown> | undefined;
  return request.method === 'GET' && !query?.query && /text\/html/.test(request.headers.accept ?? '');
}

export function sendExplorer(reply: FastifyReply): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header('content-security-policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'self'; frame-ancestors 'none'")
    .send(page());
}

/** A file inside an installed package that the package's "exports" does not list (React's UMD builds). */
function packageFile(name: string, file: string): string {
  return path.join(path.dirname(require.resolve(`${name}/package.json`)), file);
}

export function registerExplorerAssets(app: FastifyInstance): void {
  serveFiles(app, {
    [`${ASSETS}/graphiql.min.js`]: require.resolve('graphiql/graphiql.min.js'),
    [`${ASSETS}/graphiql.min.css`]: require.resolve('graphiql/graphiql.min.css'),
    [`${ASSETS}/react.production.min.js`]: packageFile('react', 'umd/react.production.min.js'),
    [`${ASSETS}/react-dom.production.min.js`]: packageFile('react-dom', 'umd/react-dom.production.min.js'),
  });
  app.get(`${ASSETS}/explorer.js`, async (_request, reply) => reply.type('text/javascript; charset=utf-8').send(BOOT));
}
