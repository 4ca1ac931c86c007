/// <reference lib="dom" />
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { Role } from '../../src/users/user.entity';
import { createOrganization, createUser, TEST_PASSWORD, type TestUser } from '../factories/organizations';
import { startTestApp, type TestApp } from '../helpers/test-app';

/** Real browser tests: Debian's Chromium driven by playwright-core against the real app. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = path.join(__dirname, '..', '..', 'docs', 'screenshots');
const KEY_PATTERN = /cak_[0-9A-Za-z]{38}/;

describe('in a real browser', () => {
  let app: TestApp;
  let browser: Browser;
  let base: string;
  let admin: TestUser;
  let member: TestUser;
  let target: TestUser;

  beforeAll(async () => {
    app = await startTestApp();
    base = app.url.replace(/\/graphql$/, '');
    admin = await createOrganization(app, 'Sunrise Recovery Center', TEST_PASSWORD);
    target = await createUser(app, admin, { role: Role.MEMBER, name: 'Jordan Billing Integration' });
    member = await createUser(app, admin, { role: Role.MEMBER, name: 'Morgan Member', password: TEST_PASSWORD });
    for (const name of ['Avery Admissions', 'Casey Clinical', 'Riley Reception']) {
      await createUser(app, admin, { role: name.startsWith('C') ? Role.MANAGER : Role.MEMBER, name });
    }
    browser = await chromium.launch({
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
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  async function open(): Promise<{ context: BrowserContext; page: Page; hosts: Set<string>; bodies: string[] }> {
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await context.newPage();
    const hosts = new Set<string>();
    const bodies: string[] = [];
    page.on('request', (request) => hosts.add(new URL(request.url()).host));
    page.on('response', async (response) => {
      if (response.url().includes('/graphql') && response.request().method() === 'POST') {
        bodies.push(await response.text().catch(() => ''));
      }
    });
    return { context, page, hosts, bodies };
  }

  async function signIn(page: Page, user: TestUser): Promise<void> {
    await page.goto(`${base}/admin`);
    await page.fill('input[name=email]', user.email);
    await page.fill('input[name=password]', TEST_PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForSelector('#users');
  }

  it('the explorer runs { me { email } } with a key typed into its headers editor, offline', async () => {
    const { context, page, hosts } = await open();
    try {
      // The schema loads with the headers editor as it starts (an empty X-Access-Key): no 401, nothing counted.
      const introspection = page.waitForResponse(
        (response) => response.url().includes('/graphql') && /IntrospectionQuery/.test(response.request().postData() ?? ''),
        { timeout: 20_000 },
      );
      await page.goto(`${base}/graphql`);
      await page.waitForSelector('.graphiql-container', { timeout: 20_000 });
      const schema = await introspection;
      expect(schema.status()).toBe(200);
      expect(await schema.json()).toHaveProperty('data.__schema.queryType.name', 'Query');
      await page.getByText('Headers', { exact: true }).click();
      const headers = page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror').last();
      await headers.click();
      await page.keyboard.press('Control+A');
      await page.keyboard.insertText(JSON.stringify({ 'X-Access-Key': admin.key }));
      await page.locator('.graphiql-query-editor .CodeMirror').first().click();
      await page.keyboard.press('Control+A');
      await page.keyboard.insertText('{ me { email } }');
      await page.click('.graphiql-execute-button');
      await page.waitForFunction((email) => document.querySelector('.graphiql-response')?.textContent?.includes(email), admin.email, {
        timeout: 20_000,
      });
      expect([...hosts]).toEqual([new URL(base).host]);
    } finally {
      await context.close();
    }
  }, 60_000);

  it('an admin signs in, searches, opens a profile, reveals and copies the key, and regenerates it', async () => {
    const { context, page, hosts } = await open();
    try {
      await signIn(page, admin);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'users-list.png') });
      await page.fill('input[name=search]', 'jordan');
      await page.click('form.inline button[type=submit]');
      await page.waitForFunction(() => document.querySelectorAll('#users tbody tr').length === 1);
      await page.click('text=Jordan Billing Integration');
      await page.waitForSelector('#access-key-section');
      expect(await page.textContent('#access-key')).not.toMatch(KEY_PATTERN);

      await page.click('#reveal-key');
      // The masked hint ("cak_...XXXX  (hidden)") also starts with cak_: wait for the key itself.
      await page.waitForFunction((key) => document.querySelector('#access-key')?.textContent === key, target.key);
      expect(await page.textContent('#access-key')).toBe(target.key);
      await page.click('#copy-key');
      await page.waitForSelector('text=Access key copied');
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(target.key);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'profile.png') });

      page.once('dialog', (dialog) => void dialog.accept());
      await page.click('#regenerate-key');
      await page.waitForSelector('#regenerated');
      const newKey = (await page.textContent('#access-key'))!;
      expect(newKey).toMatch(KEY_PATTERN);
      expect(newKey).not.toBe(target.key);

      const old = await app.gql('{ me { id } }', { key: target.key });
      expect(old.status).toBe(401);
      const fresh = await app.gql('{ me { id } }', { key: newKey });
      expect(fresh.body.data!.me.id).toBe(target.id);
      expect([...hosts]).toEqual([new URL(base).host]);
    } finally {
      await context.close();
    }
  }, 60_000);

  it('a MEMBER finds no Access Key section and no key in any response, and a clear message at its URL', async () => {
    const { context, page, bodies } = await open();
    try {
      await signIn(page, member);
      await page.goto(`${base}/admin#/users/${member.id}`);
      await page.waitForSelector('#profile-name');
      expect(await page.locator('#access-key-section').count()).toBe(0);
      await page.goto(`${base}/admin#/users/${member.id}/access-key`);
      await page.waitForSelector('#access-key-denied');
      expect(await page.textContent('#access-key-denied')).toMatch(/Only admins/);
      await page.goto(`${base}/admin#/users/${target.id}`);
      await page.waitForSelector('.error');
      expect(bodies.length).toBeGreaterThan(2);
      for (const body of bodies) expect(body).not.toMatch(KEY_PATTERN);
    } finally {
      await context.close();
    }
  }, 60_000);
});
