// @ts-check
/// <reference lib="dom" />
import { ApiError, credential, forgetCredential, gql, gqlAs } from './api.js';
import { notice } from './dom.js';

/**
 * What the console knows about the signed-in person, re-read from the API on every screen so that a role
 * changed anywhere (by this admin or another) shows at once; and a notice carried to the next screen.
 */

/**
 * @typedef {import('./api.js').Role} Role
 * @typedef {{ id: string; name: string; email: string; role: Role; organization: { name: string } }} SignedInUser
 */

/** @type {SignedInUser | null} */
let signedIn = null;
/** @type {Node | null} */
let carried = null;
/** Counts sign-outs, so that what a screen keeps between visits (list positions) is never shown to the next person. */
let generation = 0;

/** The signed-in person as last read. @throws {Error} when nobody is signed in (a programming error). */
export function signedInUser() {
  if (!signedIn) throw new Error('Nobody is signed in.');
  return signedIn;
}

/**
 * Reads the signed-in person again.
 * @returns {Promise<{ user: SignedInUser; previousRole: Role | null }>} previousRole: their role at the last read
 *   when it was another one, else null
 * @throws {import('./api.js').ApiError} as gql()
 */
export async function loadSignedInUser() {
  const data = await gql('{ me { id name email role organization { name } } }');
  const user = /** @type {SignedInUser} */ (data.me);
  const previousRole = signedIn && signedIn.id === user.id && signedIn.role !== user.role ? signedIn.role : null;
  signedIn = user;
  return { user, previousRole };
}

/** Which sign-in this is (changes at every sign-out). */
export function signInGeneration() {
  return generation;
}

/**
 * Signs this tab out: forgets the credential and the person, shows the sign-in screen with `message`, and ends
 * the session on the server (a key has nothing to end).
 * @param {string} [message]
 */
export function signOut(message = 'You are signed out.') {
  const ended = credential();
  forgetCredential();
  signedIn = null;
  generation += 1;
  carryToNextScreen(notice(message, 'info'));
  go('/settings');
  if (ended?.kind === 'session') void gqlAs({ query: 'mutation { logout }', credential: ended }).catch(() => undefined);
}

/** Forgets the person without a word (their credential was refused; the caller explains). */
export function forgetSignedInUser() {
  signedIn = null;
  generation += 1;
}

/**
 * Shows `node` at the top of the next screen (a result that a navigation would otherwise hide).
 * @param {Node} node
 */
export function carryToNextScreen(node) {
  carried = node;
}

/** The notice carried to this screen, once. */
export function takeCarried() {
  const node = carried;
  carried = null;
  return node;
}

/**
 * Opens a console route (`/users/<id>`); the same route again is rendered again.
 * @param {string} path
 */
export function go(path) {
  const hash = `#${path}`;
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

/**
 * What a screen does with an act the API refused as FORBIDDEN: the person's role changed since the screen was
 * drawn (another admin demoted them), so the screen is drawn again for the role they have now, with the refusal
 * at its top. Other errors are left to the caller.
 * @param {unknown} error
 * @returns {boolean} whether the error was a FORBIDDEN (and the screen is being drawn again)
 */
export function redrawIfForbidden(error) {
  if (!(error instanceof ApiError) || error.code !== 'FORBIDDEN') return false;
  carryToNextScreen(
    notice(`${error.message} Your role may have changed: this screen now shows what your role allows.`, 'error'),
  );
  go(location.hash.slice(1));
  return true;
}
