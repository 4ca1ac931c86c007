/// <reference lib="dom" />
import { createOrganization, type TestUser } from '../factories/organizations';
import { openWatchedPage, type WatchedPage } from './helpers/browser';
import { expectScreenRight, looksDisabled, openConsole, signInWithKey } from './helpers/console';
import { useAppAndBrowser } from './helpers/suite';

/**
 * After too many failed authentications the address is locked (HTTP 429 for every request). The console and the
 * explorer say so in words, with the time the lock ends, instead of showing the raw answer. Its own app, with a
 * low limit, so that the lock touches no other test; at 390 px wide (the narrow case; the desktop layout of the
 * same screens is covered by the other browser tests).
 */
describe('a locked address, in the console and the explorer', () => {
  const suite = useAppAndBrowser({ env: { AUTH_FAILURE_LIMIT: '3', AUTH_FAILURE_WINDOW_SECONDS: '600' } });
  let admin: TestUser;
  const pages: WatchedPage[] = [];

  beforeAll(async () => {
    admin = await createOrganization(suite.app, 'Lockout Clinic');
  });

  afterEach(async () => {
    for (const watched of pages.splice(0)) {
      const problems = watched.problems();
      await watched.close();
      expect(problems).toEqual([]);
    }
  });

  /** Another tab of the same browser (the same address), at 390 px. */
  const open = async () => {
    const watched = await openWatchedPage({ browser: suite.browser, origin: suite.origin, viewport: 'phone' });
    pages.push(watched);
    return watched;
  };

  it('says in words that the address is locked and until when: at sign-in, on a signed-in screen, and in the explorer', async () => {
    const signedIn = await open();
    await openConsole(signedIn.page, '/settings');
    await signInWithKey(signedIn.page, admin.key);

    const stranger = await open();
    await openConsole(stranger.page, '/settings');
    const lockMessage = stranger.page.getByText(/locked until \d{1,2}:\d{2}:\d{2}.*\(in about 10 minutes\)/);
    await stranger.expecting([401, 429], async () => {
      for (let attempt = 0; attempt < 10 && !(await lockMessage.isVisible()); attempt++) {
        await stranger.page.getByLabel('Access key', { exact: true }).fill(`cak_${'x'.repeat(38)}`);
        await stranger.page.getByRole('button', { name: 'Sign in with key' }).click();
        await stranger.page.locator('.notice-error').waitFor();
      }
      await lockMessage.waitFor();
    });
    expect(await looksDisabled(stranger.page.getByRole('button', { name: 'Sign in with key' }))).toBe(true);
    expect(await looksDisabled(stranger.page.getByRole('button', { name: 'Sign in', exact: true }))).toBe(true);
    await expectScreenRight(stranger, 'sign-in, locked');

    // The signed-in tab is on the same address: its next screen says the same, and keeps the person signed in.
    await signedIn.expecting([429], async () => {
      await signedIn.page
        .getByRole('navigation', { name: 'Settings' })
        .getByRole('link', { name: 'Manage Users' })
        .click();
      await signedIn.page.getByText(/locked until \d{1,2}:\d{2}:\d{2}/).waitFor();
    });
    expect(await signedIn.page.locator('#account').isVisible()).toBe(true);
    await expectScreenRight(signedIn, 'signed in, locked');

    const explorer = await open();
    await explorer.expecting([429], async () => {
      await explorer.page.goto(`/graphql`);
      await explorer.page.getByText(/locked until \d{1,2}:\d{2}:\d{2}.*\(in about 10 minutes\)/).waitFor();
    });
    await expectScreenRight(explorer, 'explorer, locked');
  });
});
