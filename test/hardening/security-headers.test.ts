import { startTestApp, type TestApp } from '../helpers/test-app';

/** The generic security headers are on every response: the API, the pages, health checks and errors. */
describe('security headers', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  const base = () => app.url.replace(/\/graphql$/, '');

  it.each([
    [
      'the API',
      () =>
        fetch(app.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"query":"{ __typename }"}',
        }),
    ],
    [
      'a refused credential',
      () =>
        fetch(app.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-access-key': 'x' },
          body: '{}',
        }),
    ],
    ['the explorer page', () => fetch(app.url, { headers: { accept: 'text/html' } })],
    ['the admin console', () => fetch(`${base()}/admin`)],
    ['a health check', () => fetch(`${base()}/healthz`)],
    ['an unknown path', () => fetch(`${base()}/nothing-here`)],
  ])('are set on %s', async (_what, request) => {
    const response = await request();
    expect({
      nosniff: response.headers.get('x-content-type-options'),
      referrer: response.headers.get('referrer-policy'),
      frame: response.headers.get('x-frame-options'),
      opener: response.headers.get('cross-origin-opener-policy'),
      resource: response.headers.get('cross-origin-resource-policy'),
    }).toEqual({
      nosniff: 'nosniff',
      referrer: 'no-referrer',
      frame: 'DENY',
      opener: 'same-origin',
      resource: 'same-origin',
    });
  });

  it("leave each page's own Content-Security-Policy in place", async () => {
    expect((await fetch(`${base()}/admin`)).headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
  });
});
