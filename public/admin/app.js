// The admin console: plain modules that use only the public GraphQL API. Credentials live in this tab's
// sessionStorage; every value from the API is written with textContent, never as HTML.
const API = '/graphql';
const view = document.getElementById('view');
const store = sessionStorage;
let me = null;

function credentialHeaders() {
  const token = store.getItem('token');
  const key = store.getItem('accessKey');
  if (token) return { authorization: `Bearer ${token}` };
  if (key) return { 'x-access-key': key };
  return {};
}

async function gql(query, variables = {}) {
  const response = await fetch(API, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...credentialHeaders() },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (response.status === 401) {
    signOut();
    throw new Error(body.errors?.[0]?.message ?? 'Please sign in again.');
  }
  if (body.errors?.length && !body.data) throw new Error(body.errors[0].message);
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function show(...nodes) {
  view.replaceChildren(...nodes);
}

function fail(error) {
  return el('p', { class: 'error', role: 'alert', text: error.message ?? String(error) });
}

function signOut() {
  const token = store.getItem('token');
  if (token) fetch(API, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: 'mutation { logout }' }) }).catch(() => {});
  store.clear();
  me = null;
  location.hash = '#/login';
}

// --- sign in ---------------------------------------------------------------------------------------------

function loginView(message) {
  const email = el('input', { name: 'email', type: 'email', placeholder: 'Email', autocomplete: 'username' });
  const password = el('input', { name: 'password', type: 'password', placeholder: 'Password', autocomplete: 'current-password' });
  const key = el('input', { name: 'accessKey', placeholder: 'or paste an access key (cak_...)', autocomplete: 'off' });
  const error = el('div');
  const form = el('form', {
    class: 'login',
    onsubmit: async (event) => {
      event.preventDefault();
      store.clear();
      try {
        if (key.value.trim()) store.setItem('accessKey', key.value.trim());
        else {
          const result = await gql('mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { token } }', { e: email.value, p: password.value });
          if (result.errors) throw new Error(result.errors[0].message);
          store.setItem('token', result.data.login.token);
        }
        await loadMe();
        location.hash = '#/users';
      } catch (e) {
        store.clear();
        error.replaceChildren(fail(e));
      }
    },
  }, el('h1', { text: 'Sign in to User & Access Management' }), message ? el('p', { class: 'notice', text: message }) : null, email, password, key, el('button', { type: 'submit', text: 'Sign in' }), error);
  show(form);
}

async function loadMe() {
  const result = await gql('{ me { id name email role organization { name } } }');
  me = result.data.me;
  document.getElementById('whoami').textContent = `${me.name} (${me.role}) · ${me.organization.name}`;
  document.getElementById('sign-out').hidden = false;
}

// --- Manage Users ----------------------------------------------------------------------------------------

const PAGE_SIZE = 20;
const listState = { search: '', role: '', cursors: [null] };

async function usersView() {
  const search = el('input', { name: 'search', type: 'search', placeholder: 'Search name or email', value: listState.search });
  const role = el('select', { name: 'role' }, ['', 'ADMIN', 'MANAGER', 'MEMBER'].map((r) => el('option', { value: r, text: r || 'Any role', selected: r === listState.role })));
  const filters = el('form', {
    class: 'inline',
    onsubmit: (event) => {
      event.preventDefault();
      Object.assign(listState, { search: search.value, role: role.value, cursors: [null] });
      usersView();
    },
  }, search, role, el('button', { type: 'submit', text: 'Search' }));

  const after = listState.cursors[listState.cursors.length - 1];
  const filter = { ...(listState.search ? { search: listState.search } : {}), ...(listState.role ? { role: listState.role } : {}) };
  let page;
  try {
    const result = await gql(
      `query ($filter: UsersFilter, $first: Int, $after: String) {
        users(filter: $filter, first: $first, after: $after) {
          totalCount edges { node { id name email role isActive } } pageInfo { hasNextPage endCursor }
        }
      }`,
      { filter, first: PAGE_SIZE, after },
    );
    page = result.data.users;
  } catch (e) {
    return show(el('h1', { text: 'Manage Users' }), fail(e));
  }
  const rows = page.edges.map(({ node }) =>
    el('tr', {},
      el('td', {}, el('a', { href: `#/users/${node.id}`, text: node.name })),
      el('td', { text: node.email }),
      el('td', { text: node.role }),
      el('td', { class: node.isActive ? '' : 'status-inactive', text: node.isActive ? 'Active' : 'Deactivated' })),
  );
  const pager = el('div', { class: 'toolbar' },
    el('span', { text: `${page.totalCount} user${page.totalCount === 1 ? '' : 's'}` }),
    listState.cursors.length > 1 ? el('button', { class: 'secondary', text: 'Previous', onclick: () => { listState.cursors.pop(); usersView(); } }) : null,
    page.pageInfo.hasNextPage ? el('button', { class: 'secondary', text: 'Next', onclick: () => { listState.cursors.push(page.pageInfo.endCursor); usersView(); } }) : null);
  show(
    el('h1', { text: 'Manage Users' }),
    filters,
    el('table', { id: 'users' }, el('thead', {}, el('tr', {}, ['Name', 'Email', 'Role', 'Status'].map((h) => el('th', { text: h })))), el('tbody', {}, rows)),
    pager,
  );
}

// --- a user's profile --------------------------------------------------------------------------------------

async function profileView(id, section) {
  const isAdmin = me.role === 'ADMIN';
  // Admins get the key's hint here; the key itself only when they press Reveal (which is what is audited).
  const query = `query ($id: ID!) { user(id: $id) { id name email role isActive createdAt ${isAdmin ? 'accessKeyInfo { hint createdAt lastUsedAt }' : ''} } }`;
  let user;
  try {
    const result = await gql(query, { id });
    user = result.data?.user;
    if (!user) throw new Error(result.errors?.[0]?.message ?? 'User not found.');
  } catch (e) {
    return show(el('h1', { text: 'User profile' }), fail(e));
  }
  const notice = el('div');
  const details = el('dl', {},
    el('dt', { text: 'Name' }), el('dd', { id: 'profile-name', text: user.name }),
    el('dt', { text: 'Email' }), el('dd', { id: 'profile-email', text: user.email }),
    el('dt', { text: 'Role' }), el('dd', { id: 'profile-role', text: user.role }),
    el('dt', { text: 'Status' }), el('dd', { id: 'profile-status', text: user.isActive ? 'Active' : 'Deactivated' }));

  const canEdit = isAdmin || user.id === me.id;
  const name = el('input', { name: 'name', value: user.name });
  const email = el('input', { name: 'email', type: 'email', value: user.email, disabled: !isAdmin });
  const edit = canEdit
    ? el('form', {
        class: 'inline',
        id: 'edit-form',
        hidden: true,
        onsubmit: async (event) => {
          event.preventDefault();
          const input = isAdmin ? { name: name.value, email: email.value } : { name: name.value };
          const result = await gql('mutation ($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id } }', { id, input }).catch((e) => ({ errors: [e] }));
          if (result.errors) return notice.replaceChildren(fail(result.errors[0]));
          profileView(id);
        },
      }, name, email, el('button', { type: 'submit', text: 'Save' }))
    : null;
  const actions = el('div', { class: 'toolbar' },
    canEdit ? el('button', { class: 'secondary', text: 'Edit', onclick: () => { edit.hidden = !edit.hidden; } }) : null,
    isAdmin ? roleControl(user, notice) : null,
    isAdmin ? el('button', {
      class: user.isActive ? 'danger' : '',
      text: user.isActive ? 'Deactivate' : 'Reactivate',
      onclick: async () => {
        const mutation = user.isActive ? 'deactivateUser' : 'reactivateUser';
        const result = await gql(`mutation ($id: ID!) { ${mutation}(id: $id) { id } }`, { id }).catch((e) => ({ errors: [e] }));
        if (result.errors) return notice.replaceChildren(fail(result.errors[0]));
        profileView(id);
      },
    }) : null);

  const parts = [el('h1', { text: user.name }), notice, details, actions, edit];
  if (isAdmin) parts.push(accessKeySection(user, notice));
  else if (section === 'access-key') parts.push(el('p', { class: 'notice', id: 'access-key-denied', text: 'Only admins of your organization can see access keys. Ask your System Administrator.' }));
  show(...parts);
}

function roleControl(user, notice) {
  const select = el('select', { name: 'role' }, ['ADMIN', 'MANAGER', 'MEMBER'].map((r) => el('option', { value: r, text: r, selected: r === user.role })));
  return el('span', {}, select, el('button', {
    class: 'secondary',
    text: 'Change role',
    onclick: async () => {
      const result = await gql('mutation ($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id } }', { id: user.id, role: select.value }).catch((e) => ({ errors: [e] }));
      if (result.errors) return notice.replaceChildren(fail(result.errors[0]));
      profileView(user.id);
    },
  }));
}

/** "User Advanced Options": the Access Key, masked until Reveal, with Copy and Regenerate. */
function accessKeySection(user, notice) {
  const info = user.accessKeyInfo;
  const value = el('span', { class: 'key', id: 'access-key', text: info ? `${info.hint}  (hidden)` : 'No key yet: press Edit, then Save, to create one.' });
  let revealed = null;
  const copy = el('button', {
    class: 'secondary', id: 'copy-key', text: 'Copy', disabled: true,
    onclick: async () => {
      await navigator.clipboard.writeText(revealed);
      notice.replaceChildren(el('p', { class: 'ok', text: 'Access key copied to the clipboard.' }));
    },
  });
  const reveal = el('button', {
    id: 'reveal-key', text: 'Reveal', disabled: !info,
    onclick: async () => {
      const result = await gql('query ($id: ID!) { user(id: $id) { accessKey } }', { id: user.id }).catch((e) => ({ errors: [e] }));
      if (result.errors) return notice.replaceChildren(fail(result.errors[0]));
      revealed = result.data.user.accessKey;
      value.textContent = revealed;
      copy.disabled = false;
    },
  });
  const regenerate = el('button', {
    class: 'danger', id: 'regenerate-key', text: 'Regenerate',
    onclick: async () => {
      if (!confirm(`Regenerate the access key of ${user.name}? Integrations using the current key stop working at once.`)) return;
      const result = await gql('mutation ($id: ID!) { regenerateAccessKey(userId: $id) { accessKey } }', { id: user.id }).catch((e) => ({ errors: [e] }));
      if (result.errors) return notice.replaceChildren(fail(result.errors[0]));
      revealed = result.data.regenerateAccessKey.accessKey;
      value.textContent = revealed;
      copy.disabled = false;
      notice.replaceChildren(el('p', { class: 'notice', id: 'regenerated', text: 'A new key was created. Copy it into your integrations now; the old key no longer works.' }));
    },
  });
  return el('section', { id: 'access-key-section' },
    el('h2', { text: 'User Advanced Options' }),
    el('dl', {}, el('dt', { text: 'Access Key' }), el('dd', {}, value)),
    info?.lastUsedAt ? el('p', { text: `Last used ${new Date(info.lastUsedAt).toLocaleString()}` }) : null,
    el('div', { class: 'toolbar' }, reveal, copy, regenerate),
    el('p', { text: 'Treat this key like a password: never share it in public forums or unencrypted email.' }));
}

// --- routing -----------------------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || '#/users';
  if (!credentialHeaders()['authorization'] && !credentialHeaders()['x-access-key']) return loginView();
  if (!me) {
    try {
      await loadMe();
    } catch (e) {
      return loginView(e.message);
    }
  }
  const profile = /^#\/users\/([0-9a-f-]{36})(?:\/(access-key))?$/.exec(hash);
  if (profile) return profileView(profile[1], profile[2]);
  if (hash === '#/login') return loginView();
  return usersView();
}

document.getElementById('sign-out').addEventListener('click', signOut);
window.addEventListener('hashchange', route);
route();
