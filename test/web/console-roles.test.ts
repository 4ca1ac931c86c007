/// <reference lib="dom" />
import type { Page } from 'playwright-core';

import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import type { TestApp } from '../helpers/test-app';
import { KEY_PATTERN, type ViewportName, VIEWPORTS, type WatchedPage } from './helpers/browser';
import { expectScreenRight, openConsole, signIn, signInWithKey, visibleText } from './helpers/console';
import { useAppAndBrowser, useWatchedPage } from './helpers/suite';

/**
 * The admin console as a MANAGER and as a MEMBER, in Chromium, at desktop width and at 390 x 844: the help
 * article's steps end at the troubleshooting case "Permission Denied", explained in words; neither role ever sees
 * the Access Key section, and no key reaches their browser in any answer.
 */
const suite = useAppAndBrowser();

describe.each(Object.keys(VIEWPORTS) as ViewportName[])('the admin console as a MANAGER or MEMBER, %s', (viewport) => {
  const current = useWatchedPage(suite, {
    viewport,
    afterEach: (watched) => {
      for (const body of watched.graphqlBodies) expect(body).not.toMatch(KEY_PATTERN);
    },
  });
  let app: TestApp;
  let admin: TestUser;
  let integration: TestUser;
  let watched: WatchedPage;
  let page: Page;

  beforeAll(async () => {
    ({ app } = suite);
    admin = await createOrganization(app, 'Harbor Health', TEST_PASSWORD);
    integration = await createUser(app, admin, { name: 'Jordan Billing Integration' });
  });

  beforeEach(() => ({ watched, page } = current));

  const settingsNav = () => page.getByRole('navigation', { name: 'Settings' });

  describe.each([Role.MANAGER, Role.MEMBER])('signed in as a %s', (role) => {
    let self: TestUser;
    beforeAll(async () => {
      self = await createUser(app, admin, {
        role,
        name: `Pat ${role === Role.MANAGER ? 'Manager' : 'Member'}`,
        password: TEST_PASSWORD,
      });
    });

    it('follows the help article to a profile and meets "Permission Denied" in words: no Access Key section', async () => {
      await openConsole(page, '/settings');
      await signIn(page, self);
      expect(await page.locator('#my-role').textContent()).toBe(role === Role.MANAGER ? 'Manager' : 'Member');
      await expectScreenRight(watched, `settings as ${role}`);
      expect(await page.locator('#nav-audit').isVisible()).toBe(false);
      expect(await page.locator('#nav-key-policy').isVisible()).toBe(false);
      expect(await visibleText(page)).not.toContain('New user');
      expect(await visibleText(page)).not.toContain('Access key policy');

      await settingsNav().getByRole('link', { name: 'Manage Users' }).click();
      await page.locator('#users').waitFor();
      await expectScreenRight(watched, `manage users as ${role}`);
      const names = await page.locator('#users tbody td:first-child').allInnerTexts();
      if (role === Role.MEMBER) expect(names.map((name) => name.replace(/^Name\s*/, ''))).toEqual([self.name]);
      else expect(names.join('\n')).toContain('Jordan Billing Integration');
      expect(await page.locator('#new-user').count()).toBe(0);

      // Another user's profile: a manager sees it without "null" or a key; a member is told it is not theirs to see.
      await page.goto(`/admin/#/users/${integration.id}`);
      if (role === Role.MANAGER) {
        await page.locator('#profile-name').waitFor();
        await expectScreenRight(watched, 'another profile as MANAGER');
        expect(await page.locator('#access-key-denied').textContent()).toContain('contact your System Administrator');
        expect(await page.locator('#edit-user').count()).toBe(0);
      } else {
        await page.getByText('This user does not exist, or you may not see them.').waitFor();
        await expectScreenRight(watched, 'another profile as MEMBER');
      }
      expect(await page.locator('#access-key-section').count()).toBe(0);

      // The key's own deep link, on their own profile: the same words, never the section.
      await page.goto(`/admin/#/users/${self.id}/access-key`);
      await page.locator('#access-key-denied').waitFor();
      expect(await page.locator('#access-key-section').count()).toBe(0);
      expect(await visibleText(page)).not.toMatch(/User Advanced Options\n|Reveal|Regenerate/);
      await expectScreenRight(watched, `own profile as ${role}`);
    });

    it('finds the admin-only screens closed, in words', async () => {
      await openConsole(page, '/audit');
      await signInWithKey(page, self.key);
      await page.getByText('Only admins of your organization can read the audit log.').waitFor();
      await expectScreenRight(watched, `audit log as ${role}`);
      await page.goto(`/admin/#/users/new`);
      await page.getByText('Only admins of your organization can create users.').waitFor();
      await expectScreenRight(watched, `new user as ${role}`);
      await page.goto(`/admin/#/key-policy`);
      await page.getByText('Only admins of your organization can set the access key policy.').waitFor();
      expect(await page.locator('#maxKeyAgeDays, [name="maxKeyAgeDays"]').count()).toBe(0);
      await expectScreenRight(watched, `access key policy as ${role}`);
    });

    it('edits their own name (Save says so) but not their email, and changes their own password', async () => {
      await openConsole(page, `/users/${self.id}`);
      await signInWithKey(page, self.key);
      await page.getByRole('button', { name: 'Edit' }).click();
      const form = page.getByRole('form', { name: `Edit ${self.name}` });
      expect(await form.getByLabel('Email').count()).toBe(0);
      await form.getByLabel('Name').fill(`${self.name} Jr`);
      await form.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Saved.').waitFor();
      expect(await page.locator('#whoami').textContent()).toBe(`${self.name} Jr`);
      expect(await page.locator('#access-key-section').count()).toBe(0);

      await settingsNav().getByRole('link', { name: 'Change password' }).click();
      await page.getByLabel('Current password').fill(TEST_PASSWORD);
      await page.getByLabel('New password', { exact: true }).fill(`${TEST_PASSWORD} ${role}`);
      await page.getByLabel('New password, again').fill(`${TEST_PASSWORD} ${role}`);
      await page.getByRole('button', { name: 'Change password' }).click();
      await page.getByText('Your password was changed.').waitFor();
      await expectScreenRight(watched, `account as ${role}`);
      self.password = `${TEST_PASSWORD} ${role}`;
      const login = await app.gql('mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { token } }', {
        variables: { e: self.email, p: self.password },
      });
      expect(login.body.data?.login.token).toMatch(/^cas_/);
    });
  });
});
