// @ts-check
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import { credential, forgetCredential, whenCredentialRefused } from './api.js';
import { h, notice, pageHeading, roleName } from './dom.js';
import { carryToNextScreen, forgetSignedInUser, loadSignedInUser, signOut, takeCarried } from './state.js';
import { accountView } from './view-account.js';
import { auditView } from './view-audit.js';
import { keyPolicyView } from './view-key-policy.js';
import { newUserView } from './view-new-user.js';
import { profileView } from './view-profile.js';
import { settingsView } from './view-settings.js';
import { signInView } from './view-sign-in.js';
import { usersView } from './view-users.js';

/**
 * The admin console's shell and router. Routes live in the URL's fragment (`#/users/<id>`), so every screen can be
 * linked to, and a link opened before sign-in opens after it. Every screen re-reads the signed-in person first, so
 * the header and what is offered follow a role change at once.
 */

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const flash = /** @type {HTMLElement} */ (document.getElementById('flash'));
const shell = {
  account: /** @type {HTMLElement} */ (document.getElementById('account')),
  whoami: /** @type {HTMLAnchorElement} */ (document.getElementById('whoami')),
  role: /** @type {HTMLElement} */ (document.getElementById('my-role')),
  organization: /** @type {HTMLElement} */ (document.getElementById('my-organization')),
  sidebar: /** @type {HTMLElement} */ (document.getElementById('sidebar')),
  auditItem: /** @type {HTMLElement} */ (document.getElementById('nav-audit-item')),
  keyPolicyItem: /** @type {HTMLElement} */ (document.getElementById('nav-key-policy-item')),
};

const UUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';

/** The route in the URL: `#/users?role=ADMIN` is { path: '/users', params: role=ADMIN }. */
function currentRoute() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  return { path: path === '' || path === '/' ? '/settings' : path, params: new URLSearchParams(query) };
}

/**
 * A fresh container for the screen about to be drawn: a screen still loading when the next one opens writes into
 * its own, detached, container and is never seen.
 */
function mountScreen() {
  const screen = h('div', { id: 'screen' });
  /** @type {HTMLElement} */ (document.getElementById('screen')).replaceWith(screen);
  return screen;
}

/**
 * Shows who is signed in (or nobody: then nothing of the last person stays on the page).
 * @param {import('./state.js').SignedInUser | null} user
 */
function showSignedIn(user) {
  shell.account.hidden = !user;
  shell.sidebar.hidden = !user;
  shell.whoami.textContent = user?.name ?? '';
  shell.role.textContent = user ? roleName(user.role) : '';
  shell.organization.textContent = user?.organization.name ?? '';
  shell.auditItem.hidden = user?.role !== 'ADMIN';
  shell.keyPolicyItem.hidden = user?.role !== 'ADMIN';
  const path = currentRoute().path;
  for (const link of shell.sidebar.querySelectorAll('a')) {
    const target = link.getAttribute('href')?.slice(1) ?? '';
    const current =
      target === path || (target === '/users' && path.startsWith('/users/') && path !== `/users/${user?.id}`);
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

/**
 * @param {HTMLElement} screen
 * @param {string} path
 * @param {URLSearchParams} params
 */
async function drawScreen(screen, path, params) {
  const profile = new RegExp(`^/users/(${UUID})(?:/(access-key))?$`).exec(path);
  if (path === '/settings') return settingsView(screen);
  if (path === '/users') return usersView(screen, params);
  if (path === '/users/new') return newUserView(screen);
  if (profile) return profileView(screen, { id: profile[1], section: profile[2] ?? null });
  if (path === '/account') return accountView(screen);
  if (path === '/audit') return auditView(screen, params);
  if (path === '/key-policy') return keyPolicyView(screen);
  screen.replaceChildren(
    ...pageHeading('Page not found', [['Settings', '/settings']]),
    h('p', {}, 'There is no such page. ', h('a', { href: '#/settings', text: 'Go to Settings' })),
  );
}

async function route() {
  const screen = mountScreen();
  const { path, params } = currentRoute();
  const carried = takeCarried();
  flash.replaceChildren();
  if (!credential()) {
    showSignedIn(null);
    signInView(screen, { message: carried, onSignedIn: route });
    screen.querySelector('h1')?.focus();
    return;
  }
  let signedIn;
  try {
    signedIn = await loadSignedInUser();
  } catch (error) {
    if (!screen.isConnected || !credential()) return; // another screen, or the sign-in screen, took over
    screen.replaceChildren(
      ...pageHeading('The console cannot continue', []),
      notice(error instanceof Error ? error.message : 'The console could not load.', 'error'),
      h('button', { type: 'button', text: 'Try again', onclick: route }),
    );
    return;
  }
  if (!screen.isConnected) return;
  showSignedIn(signedIn.user);
  const { previousRole, user } = signedIn;
  const roleChange = previousRole
    ? notice(
        `Your role changed from ${roleName(previousRole)} to ${roleName(user.role)}: what you can see and do changed with it.`,
        'warning',
      )
    : null;
  flash.replaceChildren(...[carried ?? roleChange].filter((node) => node !== null));
  await drawScreen(screen, path, params);
  if (screen.isConnected && !screen.contains(document.activeElement)) screen.querySelector('h1')?.focus();
}

// The signed-in credential stopped working (expired, ended elsewhere, replaced, deactivated): say so and ask to
// sign in again, staying on the same screen, which opens again after sign-in.
whenCredentialRefused(() => {
  const refused = credential();
  if (!refused) return;
  forgetCredential();
  forgetSignedInUser();
  carryToNextScreen(
    notice(
      refused.kind === 'key'
        ? 'The access key you signed in with no longer works (it was replaced, or its user was deactivated). Sign in again to continue where you were.'
        : 'Your session has ended (it expired, was signed out elsewhere, your password changed, or your account was deactivated). Sign in again to continue where you were.',
      'warning',
    ),
  );
  void route();
});

document.getElementById('sign-out')?.addEventListener('click', () => signOut());
document.getElementById('skip-link')?.addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', () => void route());
void route();
