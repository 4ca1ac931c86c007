import type { Browser, Page } from 'playwright-core';

import { startTestApp, type TestApp, type TestAppOptions } from '../../helpers/test-app';
import { launchBrowser, openWatchedPage, type ViewportName, type WatchedPage } from './browser';

/** Jest hooks that the browser test files share: one app and one Chromium per file, a watched page per test. */

// A browser walk signs people in (scrypt) and drives Chromium: on a loaded 2-core machine one test can take
// longer than jest's 30 s default without anything being wrong. Outcomes are still asserted, never durations.
jest.setTimeout(120_000);

export interface AppAndBrowser {
  readonly app: TestApp;
  readonly browser: Browser;
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
}

/** Starts the real app and Chromium before the file's tests (beforeAll) and stops them after (afterAll). */
export function useAppAndBrowser(options: TestAppOptions = {}): AppAndBrowser {
  const suite = {} as { app: TestApp; browser: Browser; origin: string };
  beforeAll(async () => {
    suite.app = await startTestApp(options);
    suite.origin = new URL(suite.app.url).origin;
    suite.browser = await launchBrowser();
  }, 60_000);
  afterAll(async () => {
    await suite.browser?.close();
    await suite.app?.close();
  });
  return suite;
}

/**
 * A fresh context and page at `viewport` for each test (beforeEach). After each test the page must have had no
 * console error or failed request (apart from what the test expected) and have asked only the app's own host.
 * @param options.afterEach more checks on the page's record, after it is closed
 */
export function useWatchedPage(
  suite: AppAndBrowser,
  options: { viewport: ViewportName; afterEach?: (watched: WatchedPage) => void },
): { readonly watched: WatchedPage; readonly page: Page } {
  const { viewport } = options;
  const current = {} as { watched: WatchedPage; page: Page };
  beforeEach(async () => {
    current.watched = await openWatchedPage({ browser: suite.browser, origin: suite.origin, viewport });
    current.page = current.watched.page;
  });
  afterEach(async () => {
    const { watched } = current;
    const problems = watched.problems();
    const hosts = [...watched.hosts];
    await watched.close();
    expect(problems).toEqual([]);
    expect(hosts).toEqual([new URL(suite.origin).host]);
    options.afterEach?.(watched);
  });
  return current;
}
