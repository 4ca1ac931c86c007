/// <reference lib="dom" />
import path from 'node:path';

import type { Page } from 'playwright-core';

import { Role } from '../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD } from '../test/factories/organizations';
import { startTestApp } from '../test/helpers/test-app';
import { launchBrowser, openWatchedPage, type ViewportName } from '../test/web/helpers/browser';
import { openConsole, revealedKey, signIn } from '../test/web/helpers/console';

/**
 * The README's screenshots of the admin console and the explorer, written to docs/screenshots/ by
 * `npm run screenshots` (run through jest for its database setup; never part of `npm test`).
 */
const OUT = path.join(__dirname, '..', 'docs', 'screenshots');

it('writes docs/screenshots/*.png', async () => {
  const app = await startTestApp();
  const browser = await launchBrowser();
  try {
    const origin = new URL(app.url).origin;
    const admin = await createOrganization(app, 'Sunrise Recovery Center', TEST_PASSWORD);
    const integration = await createUser(app, admin, { name: 'Jordan Billing Integration' });
    await createUser(app, admin, { name: 'Casey Clinical', role: Role.MANAGER });
    for (const name of ['Avery Admissions', 'Riley Reception', 'Morgan Front Desk'])
      await createUser(app, admin, { name });
    await app.gql('{ me { id } }', { key: integration.key });
    await app.services.accessKeys.flushUse();

    const shoot = async (
      viewport: ViewportName,
      work: (page: Page, shot: (name: string) => Promise<void>) => Promise<void>,
    ) => {
      const watched = await openWatchedPage({ browser, origin, viewport });
      try {
        await work(watched.page, async (name) => {
          await watched.page.screenshot({ path: path.join(OUT, `${name}.png`) });
        });
        expect(watched.problems()).toEqual([]);
      } finally {
        await watched.close();
      }
    };

    await shoot('desktop', async (page, shot) => {
      await openConsole(page, '/settings');
      await signIn(page, admin);
      await shot('settings');
      await page.getByRole('navigation', { name: 'Settings' }).getByRole('link', { name: 'Manage Users' }).click();
      await page.locator('#users').waitFor();
      await shot('users-list');
      await page.getByRole('link', { name: 'Jordan Billing Integration' }).click();
      await page.getByRole('button', { name: 'Reveal' }).click();
      await revealedKey(page);
      await shot('profile');
      await page.getByRole('button', { name: 'Regenerate…' }).click();
      await page.getByRole('dialog').getByLabel('Keep the current key working for').selectOption('86400');
      await shot('regenerate');
      await page.keyboard.press('Escape');
      await page.goto(`/admin/#/audit`);
      await page.locator('table.audit').waitFor();
      await shot('audit-log');
      await page.goto(`/graphql`);
      await page.locator('.graphiql-container').waitFor();
      await page.waitForFunction(
        () => document.querySelector('.graphiql-doc-explorer, .graphiql-execute-button') !== null,
      );
      await shot('explorer');
    });
    await shoot('phone', async (page, shot) => {
      await openConsole(page, `/users/${integration.id}`);
      await signIn(page, admin);
      await page.locator('#access-key-section').scrollIntoViewIfNeeded();
      await shot('profile-phone');
    });
  } finally {
    await browser.close();
    await app.close();
  }
});
