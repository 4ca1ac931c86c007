// @ts-check
/// <reference lib="dom" />
/**
 * Starts GraphiQL (React and GraphiQL are the UMD builds this service serves from its npm packages) with three
 * things of its own:
 * - a storage that lives in memory only: GraphiQL's tabs and history hold the headers (and so the access key)
 *   even with shouldPersistHeaders off; nothing of a session survives a reload or reaches browser storage;
 * - a headers editor that repairs a pasted key's line break (JSON forbids one inside a string; GraphiQL would
 *   answer "Headers are invalid JSON");
 * - a status line that says in words why a request was refused (a locked address and until when, a refused key).
 */

/**
 * @typedef {{
 *   createElement(type: unknown, props?: object | null, ...children: unknown[]): unknown;
 *   useState<T>(initial: T): [T, (next: T) => void];
 * }} ReactApi
 * @typedef {{ createRoot(container: Element): { render(element: unknown): void } }} ReactDomApi
 * @typedef {{ query: string; variables?: unknown; operationName?: string | null }} GraphQLParams
 */
const { React, ReactDOM, GraphiQL } = /** @type {{ React: ReactApi; ReactDOM: ReactDomApi; GraphiQL: unknown }} */ (
  /** @type {unknown} */ (window)
);

const configElement = /** @type {HTMLScriptElement} */ (document.getElementById('explorer-config'));
const config = /** @type {{ defaultQuery: string; defaultHeaders: string }} */ (
  JSON.parse(configElement.textContent ?? '{}')
);
const statusLine = /** @type {HTMLElement} */ (document.getElementById('explorer-status'));

/** GraphiQL's Storage interface over a Map: everything GraphiQL keeps ends with the page. */
function memoryStorage() {
  /** @type {Map<string, string>} */
  const items = new Map();
  return {
    /** @param {string} key */
    getItem: (key) => items.get(key) ?? null,
    /** @param {string} key @param {string} value */
    setItem: (key, value) => void items.set(key, String(value)),
    /** @param {string} key */
    removeItem: (key) => void items.delete(key),
    clear: () => items.clear(),
    get length() {
      return items.size;
    },
  };
}

/**
 * The headers text with control characters (line breaks, tabs) removed from inside its strings, when that is
 * what keeps it from being JSON: a key pasted with the line break after it. Anything else is returned as typed.
 * @param {string} text
 * @returns {string}
 */
function repairHeaders(text) {
  if (isJson(text)) return text;
  let repaired = '';
  let inString = false;
  let escaped = false;
  for (const character of text) {
    if (inString && !escaped && character < ' ') continue;
    repaired += character;
    if (escaped) escaped = false;
    else if (character === '\\') escaped = inString;
    else if (character === '"') inString = !inString;
  }
  return isJson(repaired) ? repaired : text;
}

/** @param {string} text */
function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Header values trimmed (the server trims a key too, but a browser refuses some pasted characters in a header),
 * and empty ones left out: the editor starts with an empty X-Access-Key, which sent as is would be a malformed
 * credential (401, counted by the rate limit) and the schema would never load.
 * @param {unknown} headers
 * @returns {Record<string, string>}
 */
function presentHeaders(headers) {
  /** @type {Record<string, string>} */
  const present = {};
  for (const [name, value] of Object.entries(headers && typeof headers === 'object' ? headers : {})) {
    const trimmed = String(value ?? '').trim();
    if (trimmed !== '') present[name] = trimmed;
  }
  return present;
}

/**
 * Shows why the last request was refused, or nothing (an empty message) once one goes through.
 * @param {string} message
 */
function say(message) {
  statusLine.textContent = message;
  statusLine.hidden = message === '';
}

/** @param {number} seconds */
function untilInWords(seconds) {
  const until = new Date(Date.now() + seconds * 1000);
  const minutes = Math.ceil(seconds / 60);
  const wait = seconds < 90 ? `${seconds} seconds` : `${minutes} minutes`;
  return `${until.toLocaleTimeString()} (in about ${wait})`;
}

/**
 * Explains a refused request in words above the editors; the response pane still shows the answer as sent.
 * @param {Response} response
 * @param {any} body
 */
function explain(response, body) {
  const error = body?.errors?.[0];
  if (response.status === 429) {
    const seconds = Number(response.headers.get('retry-after') ?? error?.extensions?.retryAfterSeconds ?? 0);
    say(
      `Too many failed sign-ins came from this network address, so it is locked until ${untilInWords(seconds)}. ` +
        'Until then every request from it is refused, also with a correct key.',
    );
  } else if (response.status === 401) {
    say(`The X-Access-Key (or Authorization) header was refused: ${error?.message ?? 'the credentials do not work.'}`);
  } else if (response.status >= 500) {
    say(`The server could not answer (HTTP ${response.status}): ${error?.message ?? 'try again shortly.'}`);
  } else {
    say('');
  }
}

/**
 * @param {GraphQLParams} params
 * @param {{ headers?: unknown }} [options]
 */
async function fetcher(params, options) {
  let response;
  try {
    response = await fetch(location.origin + location.pathname, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...presentHeaders(options?.headers) },
      body: JSON.stringify(params),
    });
  } catch {
    // fetch() refuses before sending when a header value holds a character headers cannot carry.
    const message =
      'The request could not be sent: the server is unreachable, or a header value holds a character headers cannot carry.';
    say(message);
    throw new Error(message);
  }
  const body = await response.json().catch(() => null);
  explain(response, body);
  return body ?? { errors: [{ message: `The server answered HTTP ${response.status} without a GraphQL body.` }] };
}

/** Names for CodeMirror's hidden input areas, which GraphiQL leaves unlabelled. */
function labelEditors() {
  /** @type {Array<[string, string]>} */
  const names = [
    ['.graphiql-query-editor', 'Query editor'],
    ['.graphiql-response', 'Response'],
  ];
  for (const [selector, label] of names) {
    for (const input of document.querySelectorAll(`${selector} .CodeMirror textarea:not([aria-label])`))
      input.setAttribute('aria-label', label);
  }
  const tools = document.querySelectorAll('.graphiql-editor-tool > .graphiql-editor');
  tools.forEach((editor, index) => {
    const input = editor.querySelector('.CodeMirror textarea:not([aria-label])');
    input?.setAttribute('aria-label', index === 0 ? 'Variables editor' : 'Headers editor');
  });
  // CodeMirror scrolls its text in a region that Tab cannot reach (its input sits outside it). Put the region in
  // the tab order and hand the focus to the editor's input, unless the focus is leaving that input (no trap).
  for (const scroller of document.querySelectorAll('.CodeMirror-scroll:not([data-keyboard])')) {
    const input = scroller.parentElement?.querySelector('textarea');
    scroller.setAttribute('data-keyboard', '');
    scroller.setAttribute('tabindex', '0');
    scroller.setAttribute('aria-label', `${input?.getAttribute('aria-label') ?? 'Editor'} text`);
    scroller.addEventListener('focus', (event) => {
      if (input && /** @type {FocusEvent} */ (event).relatedTarget !== input) input.focus();
    });
  }
}

const storage = memoryStorage();

function Explorer() {
  const [headers, setHeaders] = React.useState(config.defaultHeaders);
  return React.createElement(/** @type {any} */ (GraphiQL), {
    fetcher,
    storage,
    defaultQuery: config.defaultQuery,
    headers,
    onEditHeaders: (/** @type {string} */ text) => setHeaders(repairHeaders(text)),
    headerEditorEnabled: true,
    defaultEditorToolsVisibility: 'headers',
    shouldPersistHeaders: false,
  });
}

const root = /** @type {HTMLElement} */ (document.getElementById('graphiql'));
let labelling = 0;
new MutationObserver(() => {
  labelling ||= requestAnimationFrame(() => {
    labelling = 0;
    labelEditors();
  });
}).observe(root, { childList: true, subtree: true });
ReactDOM.createRoot(root).render(React.createElement(Explorer));
