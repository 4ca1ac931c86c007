// @ts-check
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The console's one DOM helper and its formatting of values for people. Every value from the API reaches the
 * page as text (textContent), never as HTML; nothing here prints "null" or "undefined".
 */

/**
 * @typedef {string | Node | null | undefined | false} Child
 * @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Props
 *   `text` sets textContent; `on<event>` adds a listener; `true` sets an empty attribute; false, null and
 *   undefined leave the attribute out.
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'text') node.textContent = String(value ?? '');
    else if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

/** The roles as the console names them. */
const ROLE_NAMES = /** @type {const} */ ({ ADMIN: 'Admin', MANAGER: 'Manager', MEMBER: 'Member' });

/** The server's bounds on a new password (MIN_ and MAX_PASSWORD_LENGTH in src/authentication/password.ts). */
const MIN_PASSWORD_LENGTH = 12;
const MAX_PASSWORD_LENGTH = 1024;

/**
 * The form of a password the server hashes and compares (normalizePassword in src/authentication/password.ts):
 * Unicode NFKC, so "é" typed as one code point or as "e" + U+0301, a ligature and its letters, are one password.
 * @param {string} value
 */
export function passwordForm(value) {
  return value.normalize('NFKC');
}

/**
 * A password input for a new password, judged as the server judges it: its length in characters (code points) of
 * its NFKC form. Not minlength, which counts UTF-16 units: four "ffi" ligatures are 12 characters to the server and
 * 4 units to minlength, six accented letters typed decomposed are 6 characters and 12 units. The rest of the
 * server's rules (characters this Unicode version does not define) are left to the server, whose Unicode version
 * is the one that counts; its refusal is shown in words.
 * @param {{ name: string, required?: boolean }} props
 */
export function newPasswordInput({ name, required = false }) {
  const input = h('input', { name, type: 'password', required, autocomplete: 'new-password' });
  input.addEventListener('input', () => {
    const length = [...passwordForm(input.value)].length;
    const fits = (input.value === '' && !required) || (length >= MIN_PASSWORD_LENGTH && length <= MAX_PASSWORD_LENGTH);
    input.setCustomValidity(
      fits ? '' : `Password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long.`,
    );
  });
  return input;
}

/**
 * A role as people read it ("Admin" for ADMIN).
 * @param {string} role
 * @returns {string}
 */
export function roleName(role) {
  return ROLE_NAMES[/** @type {keyof typeof ROLE_NAMES} */ (role)] ?? role;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/**
 * A date and time in the reader's locale, or `whenMissing` when there is none.
 * @param {string | null | undefined} iso
 * @param {string} [whenMissing]
 */
export function formatDateTime(iso, whenMissing = 'Never') {
  if (!iso) return whenMissing;
  return dateTime.format(new Date(iso));
}

/**
 * How long until a moment, in words ("in about 5 minutes").
 * @param {Date} moment
 */
export function fromNow(moment) {
  const seconds = Math.max(0, Math.round((moment.getTime() - Date.now()) / 1000));
  if (seconds < 90) return `in about ${seconds} second${seconds === 1 ? '' : 's'}`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `in about ${minutes} minutes`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `in about ${hours} hours`;
  return `in about ${Math.round(hours / 24)} days`;
}

/**
 * A definition list of label/value pairs; pairs whose value is null are left out.
 * @param {Array<[string, Child, string?]>} pairs label, value, and an optional id for the value
 */
export function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs
      .filter(([, value]) => value !== null)
      .map(([label, value, id]) => h('div', {}, h('dt', { text: label }), h('dd', { id }, value))),
  );
}

let fieldCount = 0;

/**
 * A labelled form control: the label sits above the control and names it.
 * @param {{ label: string; control: HTMLInputElement | HTMLSelectElement; hint?: string }} params hint: shown under
 *   the control and read with it
 */
export function field({ label, control, hint }) {
  control.id ||= `field-${++fieldCount}`;
  const hintNode = hint ? h('small', { class: 'hint', id: `${control.id}-hint`, text: hint }) : null;
  if (hintNode) control.setAttribute('aria-describedby', hintNode.id);
  return h('div', { class: 'field' }, h('label', { for: control.id, text: label }), control, hintNode);
}

/**
 * A select with the given options.
 * @param {{ name: string; options: Array<[string, string]>; value?: string }} params value, label pairs
 */
export function select({ name, options, value = '' }) {
  return h(
    'select',
    { name },
    options.map(([optionValue, label]) =>
      h('option', { value: optionValue, text: label, selected: optionValue === value }),
    ),
  );
}

/**
 * A message box. Errors are announced at once (role=alert), other notices politely (role=status).
 * @param {string} message
 * @param {'error' | 'success' | 'warning' | 'info'} kind
 */
export function notice(message, kind) {
  return h(
    'div',
    { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('p', { text: message }),
  );
}

/**
 * The top of a screen: where it sits under Settings (a breadcrumb whose links lead back) and its heading, which
 * takes the focus when the screen opens so that keyboard and screen-reader users start there.
 * @param {string} title
 * @param {Array<[string, string?]>} trail the screens above this one: label and route (none: not a link); empty
 *   for a top screen, which has no breadcrumb
 */
export function pageHeading(title, trail) {
  document.title = `${title} · crm-access`;
  const heading = h('h1', { tabindex: -1, text: title });
  if (trail.length === 0) return [heading];
  const crumbs = [...trail, [title]].map(([label, route], index, all) =>
    h(
      'li',
      {},
      route
        ? h('a', { href: `#${route}`, text: label })
        : h('span', { text: label, 'aria-current': index === all.length - 1 ? 'page' : null }),
    ),
  );
  return [h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('ol', {}, crumbs)), heading];
}

/** The trail of every screen under User & Access Management. */
export const USER_ACCESS_TRAIL = /** @type {Array<[string, string?]>} */ ([
  ['Settings', '/settings'],
  ['User & Access Management'],
]);

/**
 * Replaces the children of `parent`; null, undefined and false children are left out.
 * @param {Element} parent
 * @param {...(Child | Child[])} children
 */
export function fill(parent, ...children) {
  parent.replaceChildren(
    ...children.flat().filter((child) => child !== null && child !== undefined && child !== false),
  );
}
