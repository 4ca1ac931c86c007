import fs from 'node:fs';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';

import { startTestApp, type TestApp } from '../helpers/test-app';

/** The web pages' HTTP surface: the front door, the icon, the console's files and their headers. */
describe('the site around the API', () => {
  let app: TestApp;
  let origin: string;
  beforeAll(async () => {
    app = await startTestApp();
    origin = new URL(app.url).origin;
  });
  afterAll(() => app.close());

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${origin}${path}`, { headers, redirect: 'manual' });

  it('GET / sends a browser to the admin console', async () => {
    const response = await get('/', { accept: 'text/html' });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('/admin/');
  });

  it('serves the favicon every page links, and sends /favicon.ico to it', async () => {
    const icon = await get('/favicon.svg');
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toBe('image/svg+xml');
    expect(await icon.text()).toMatch(/^<svg /);
    const legacy = await get('/favicon.ico');
    expect(legacy.status).toBe(301);
    expect(legacy.headers.get('location')).toBe('/favicon.svg');
    for (const page of ['/admin/', '/graphql']) {
      expect(await (await get(page, { accept: 'text/html' })).text()).toContain('<link rel="icon" href="/favicon.svg"');
    }
  });

  it('serves every module the console imports, from this origin only, under a CSP without inline scripts', async () => {
    const page = await get('/admin/');
    expect(page.status).toBe(200);
    const policy = page.headers.get('content-security-policy')!;
    expect(policy).toContain("default-src 'self'");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(policy).not.toContain('unsafe-inline');
    const html = await page.text();
    const pending = [...html.matchAll(/(?:src|href)="(\/admin\/[^"]+)"/g)].map((match) => match[1]);
    const seen = new Set<string>();
    while (pending.length > 0) {
      const path = pending.pop()!;
      if (seen.has(path)) continue;
      seen.add(path);
      const response = await get(path);
      expect({ path, status: response.status }).toEqual({ path, status: 200 });
      const text = await response.text();
      if (path.endsWith('.js')) {
        expect(response.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
        for (const [, imported] of text.matchAll(/^import .* from '\.\/([\w-]+\.js)';$/gm))
          pending.push(`/admin/${imported}`);
      }
    }
    expect(seen.size).toBeGreaterThan(10);
  });

  it('answers 304 to a browser that has the file, so an upgrade is seen at once without downloading it each time', async () => {
    const first = await get('/admin/app.js');
    const etag = first.headers.get('etag')!;
    expect(first.headers.get('cache-control')).toBe('no-cache');
    expect(etag).toMatch(/^"[\w-]+"$/);
    expect((await get('/admin/app.js', { 'if-none-match': etag })).status).toBe(304);
    expect((await get('/admin/app.js', { 'if-none-match': '"another"' })).status).toBe(200);
  });

  it('lets the explorer load its fonts (data: URLs) and nothing from elsewhere', async () => {
    const policy = (await get('/graphql', { accept: 'text/html' })).headers.get('content-security-policy')!;
    expect(policy).toContain("font-src 'self' data:");
    expect(policy).toContain("default-src 'self'");
    expect(policy).not.toMatch(/script-src[^;]*unsafe/);
  });
  // Raw bytes (Node's http does not decode a content coding, where fetch would).
  const raw = (path: string, headers: Record<string, string>, base = origin) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http
        .get(`${base}${path}`, { headers }, (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
          );
        })
        .on('error', reject);
    });

  it('sends files gzipped to a client that accepts gzip, by its q-values, each form with an ETag of its own', async () => {
    const script = fs.readFileSync(require.resolve('graphiql/graphiql.min.js'));
    const url = '/explorer-assets/graphiql.min.js';
    const gzipped = await raw(url, { 'accept-encoding': 'gzip, deflate, br' });
    expect(gzipped.status).toBe(200);
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gzipped.headers.vary).toBe('Accept-Encoding');
    expect(gzipped.body.length).toBeLessThan(script.length / 3);
    expect(gunzipSync(gzipped.body).equals(script)).toBe(true);

    for (const accepted of [undefined, 'gzip;q=0', 'br', 'gzip;q=0.5, identity']) {
      const plain = await raw(url, accepted === undefined ? {} : { 'accept-encoding': accepted });
      expect([accepted, plain.headers['content-encoding'], plain.headers.vary]).toEqual([
        accepted,
        undefined,
        'Accept-Encoding',
      ]);
      expect(plain.body.equals(script)).toBe(true);
      expect(plain.headers.etag).not.toBe(gzipped.headers.etag);
    }

    const etag = gzipped.headers.etag!;
    expect((await raw(url, { 'accept-encoding': 'gzip', 'if-none-match': etag })).status).toBe(304);
    expect((await raw(url, { 'if-none-match': etag })).status).toBe(200);

    const icon = await raw('/favicon.svg', { 'accept-encoding': 'gzip' });
    expect([icon.headers['content-encoding'], icon.headers.vary]).toEqual([undefined, undefined]);
  });

  it('keeps the Vary: Origin of CORS beside Accept-Encoding', async () => {
    const withCors = await startTestApp({ env: { CORS_ORIGINS: 'https://crm.example' } });
    try {
      const answer = await raw(
        '/admin/app.js',
        { 'accept-encoding': 'gzip', origin: 'https://crm.example' },
        new URL(withCors.url).origin,
      );
      expect(answer.headers['content-encoding']).toBe('gzip');
      expect(String(answer.headers.vary).split(/, */)).toEqual(expect.arrayContaining(['Origin', 'Accept-Encoding']));
    } finally {
      await withCors.close();
    }
  });
});
