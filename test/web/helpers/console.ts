/// <reference lib="dom" />
import type { Locator, Page } from 'playwright-core';

import { TEST_PASSWORD } from '../../factories/organizations';
import { screenFindings, type WatchedPage } from './browser';

/** Steps a person takes in the admin console, shared by the browser tests. */

/** Signs in with email and password from the sign-in screen (wherever the URL points: a deep link stays). */
export async function signIn(page: Page, user: { email: string; password?: string }): Promise<void> {
  await page.getByLabel('Email', { exact: true }).fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill(user.password ?? TEST_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#account').waitFor();
}

/** Signs in with an access key, typed as given (spaces and line breaks included). */
export async function signInWithKey(page: Page, key: string): Promise<void> {
  await page.getByLabel('Access key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Sign in with key', exact: true }).click();
  await page.locator('#account').waitFor();
}

/** Opens the console at a route (`/users/<id>`), signed in or not. */
export async function openConsole(page: Page, route = '/settings'): Promise<void> {
  await page.goto(`/admin/#${route}`);
  await page.locator('#screen h1').waitFor();
}

/** Asserts what issue #14 asks of a screen (see screenFindings), naming the screen in a failure. */
export async function expectScreenRight(watched: WatchedPage, screen: string): Promise<void> {
  const findings = await screenFindings(watched.page);
  expect({ screen, viewport: watched.viewport, findings }).toEqual({
    screen,
    viewport: watched.viewport,
    findings: [],
  });
}

/** Whether a control is disabled and looks it (greyed out, no pointer). */
export async function looksDisabled(control: Locator): Promise<boolean> {
  return control.evaluate((element) => {
    const style = getComputedStyle(element);
    return (element as HTMLButtonElement).disabled && Number(style.opacity) <= 0.7 && style.cursor === 'not-allowed';
  });
}

const TAB_LIMIT = 60;

/**
 * Presses Tab until the focused element's accessible text matches `name` (then it is the one a keyboard user is
 * on), and returns the number of presses. Fails when it is not reachable within 60 presses.
 */
export async function tabTo(page: Page, name: RegExp): Promise<number> {
  for (let presses = 1; presses <= TAB_LIMIT; presses++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const element = document.activeElement as HTMLElement | null;
      if (!element || element === document.body) return '';
      const labelled = element.id ? document.querySelector(`label[for="${element.id}"]`)?.textContent : null;
      return `${element.getAttribute('aria-label') ?? ''} ${labelled ?? ''} ${element.innerText ?? ''}`.trim();
    });
    if (name.test(focused)) return presses;
  }
  throw new Error(`${name} is not reachable with Tab within ${TAB_LIMIT} presses`);
}

/** The text on the page a reader sees. */
export function visibleText(page: Page): Promise<string> {
  return page.evaluate(() => document.body.innerText);
}

/** Reads the clipboard (the context grants clipboard-read). */
export function clipboardText(page: Page): Promise<string> {
  return page.evaluate(() => navigator.clipboard.readText());
}

/** Waits until the Access Key field shows a whole key (not its hint), and returns it. */
export async function revealedKey(page: Page): Promise<string> {
  await page.waitForFunction(() =>
    /^cak_[0-9A-Za-z]{38}$/.test(document.querySelector('#access-key')?.textContent ?? ''),
  );
  return (await page.locator('#access-key').textContent())!;
}
