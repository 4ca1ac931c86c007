/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import fs from 'node:fs';

import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/**
 * Shared plumbing of the browser tests: Debian's Chromium driven by playwright-core (no download, offline),
 * a watch over every page for console errors and failed requests, and the per-screen checks of issue #14
 * (axe-core, no horizontal scrolling, every control inside the viewport, no raw JSON or "null" shown).
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;
export type ViewportName = keyof typeof VIEWPORTS;

/** A key as the service prints it (`cak_` + 38 base62 characters). */
export const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** A page with a record of everything that went wrong on it. */
export interface WatchedPage {
  readonly page: Page;
  readonly context: BrowserContext;
  readonly viewport: ViewportName;
  /** Hosts of every request the page made (all must be the app's own). */
  readonly hosts: Set<string>;
  /** Bodies of every POST /graphql answer, to look for keys that must not be there. */
  readonly graphqlBodies: string[];
  /**
   * Runs `work` while answers with the given statuses are expected (a wrong key on purpose): those answers, and
   * the "Failed to load resource" console line Chromium writes for each, are not problems, until every request
   * then in flight has its answer (at most 10 s more).
   */
  expecting<T>(statuses: number[], work: () => Promise<T>): Promise<T>;
  /** Console errors, page errors, failed requests and unexpected 4xx/5xx answers so far. */
  problems(): string[];
  close(): Promise<void>;
}

/**
 * Opens a fresh context and page at the given viewport, watched. Paths (`page.goto('/admin/')`) are relative to
 * `origin`, which may use the clipboard.
 */
export async function openWatchedPage(params: {
  browser: Browser;
  origin: string;
  viewport: ViewportName;
}): Promise<WatchedPage> {
  const { browser, origin, viewport } = params;
  const context = await browser.newContext({ viewport: VIEWPORTS[viewport], baseURL: origin });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const page = await context.newPage();
  const hosts = new Set<string>();
  const graphqlBodies: string[] = [];
  const problems: string[] = [];
  const expected = new Set<number>();
  // Statuses answered while expected, still owed the console line Chromium writes for each of them.
  const excused = new Map<number, number>();

  // Requests sent and not yet answered or failed: an expected status may come after the work that asked for it.
  let inFlight = 0;
  const onIdle: Array<() => void> = [];
  const settled = () => {
    inFlight -= 1;
    if (inFlight === 0) for (const resolve of onIdle.splice(0)) resolve();
  };
  page.on('request', (request) => {
    inFlight += 1;
    hosts.add(new URL(request.url()).host);
  });
  page.on('requestfinished', settled);
  page.on('requestfailed', settled);
  /** Resolves once no request is in flight (the 'response' handler has judged each answer by then), or after 10 s. */
  const idle = async () => {
    if (inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => onIdle.push(resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 10_000))),
    ]);
    clearTimeout(timer);
  };
  const problem = (text: string) => problems.push(text.length > 300 ? `${text.slice(0, 300)}…` : text);
  page.on('requestfailed', (request) =>
    problem(`request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`),
  );
  page.on('pageerror', (error) => problem(`page error: ${error.message}`));
  page.on('response', async (response) => {
    const status = response.status();
    if (status >= 400) {
      if (expected.has(status)) excused.set(status, (excused.get(status) ?? 0) + 1);
      else problem(`HTTP ${status}: ${response.request().method()} ${response.url()}`);
    }
    if (response.url().includes('/graphql') && response.request().method() === 'POST') {
      graphqlBodies.push(await response.text().catch(() => ''));
    }
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const status = /status of (\d{3})/.exec(message.text());
    const owed = status ? (excused.get(Number(status[1])) ?? 0) : 0;
    if (status && owed > 0) excused.set(Number(status[1]), owed - 1);
    else problem(`console error: ${message.text()}`);
  });

  return {
    page,
    context,
    viewport,
    hosts,
    graphqlBodies,
    async expecting(statuses, work) {
      for (const status of statuses) expected.add(status);
      try {
        return await work();
      } finally {
        // A request the work set off may still be answered (on a loaded machine, after the screen already
        // changed): it belongs to the window too.
        await idle();
        for (const status of statuses) expected.delete(status);
      }
    },
    problems: () => [...problems],
    close: () => context.close(),
  };
}

let axeSource: string | undefined;

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown[] }>;
}

/** axe-core (from its npm package) over the page as it is now: violations of impact serious or critical. */
export async function seriousAccessibilityViolations(page: Page): Promise<string[]> {
  axeSource ??= fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  // evaluate() is not subject to the page's CSP, which (rightly) refuses inline scripts.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await (
      window as unknown as { axe: { run(context: Document): Promise<{ violations: AxeViolation[] }> } }
    ).axe.run(document);
    return result.violations.map(({ id, impact, help, nodes }) => ({
      id,
      impact,
      help,
      nodes: nodes.map((node) => ({ target: node.target })),
    }));
  });
  return violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map(
      (violation) =>
        `${violation.impact} ${violation.id} (${violation.help}): ${violation.nodes.map((node) => JSON.stringify(node.target)).join(', ')}`,
    );
}

/**
 * What issue #14 asks of every screen, as a list of findings (empty when the screen is right): no serious or
 * critical axe violation, no horizontal scrolling, every visible control inside the viewport's width, and no raw
 * JSON, "null", "undefined" or "[object Object]" shown to the reader (except in the explorer at /graphql, whose
 * editors show JSON by design).
 */
export async function screenFindings(page: Page): Promise<string[]> {
  const layout = await page.evaluate(
    (words) => {
      const width = document.documentElement.clientWidth;
      const findings: string[] = [];
      if (document.documentElement.scrollWidth > width)
        findings.push(`scrollWidth ${document.documentElement.scrollWidth} > ${width}`);
      for (const control of document.querySelectorAll<HTMLElement>(
        'a[href], button, input, select, textarea, summary',
      )) {
        const box = control.getBoundingClientRect();
        if (box.width === 0 && box.height === 0) continue; // not rendered (hidden, or inside a closed part)
        if (insideZeroSizedClip(control)) continue; // an editor's off-screen input (CodeMirror), never seen
        if (box.left < -1 || box.right > width + 1) {
          findings.push(
            `control outside the viewport: ${control.outerHTML.slice(0, 120)} (${Math.round(box.left)}..${Math.round(box.right)})`,
          );
        }
      }
      const text = document.body.innerText;
      const raw = /(^|[^\w])(null|undefined|NaN)([^\w]|$)|\[object Object\]|\{"errors"|"extensions"/.exec(text);
      if (words && raw)
        findings.push(`raw value shown: ${JSON.stringify(text.slice(Math.max(0, raw.index - 40), raw.index + 40))}`);
      return findings;

      function insideZeroSizedClip(element: HTMLElement): boolean {
        for (let parent = element.parentElement; parent; parent = parent.parentElement) {
          const box = parent.getBoundingClientRect();
          if ((box.width <= 3 || box.height === 0) && getComputedStyle(parent).overflow === 'hidden') return true;
        }
        return false;
      }
    },
    new URL(page.url()).pathname !== '/graphql',
  );
  return [...layout, ...(await seriousAccessibilityViolations(page))];
}
