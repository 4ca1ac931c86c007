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
});
