// Ember Console: the shell (banner, navigation, sign-in state), the hash
// router and the screen each route renders into <main>.
import { Api, ApiError, describe, messageKind } from './api.js';
import { Session } from './auth.js';
import { h, append, replace, message } from './dom.js';
import { overview } from './screens/overview.js';
import { typeList, search } from './screens/resources.js';
import { resourcePage, editor } from './screens/resource.js';
import { chart } from './screens/patient.js';
import { studies, studyViewer } from './screens/imaging.js';
import { admin, isAdmin } from './screens/admin.js';

// root is the path the server's endpoints hang from: the console is at
// <root>console/, the FHIR API at <root>fhir.
const root = location.pathname.slice(0, location.pathname.lastIndexOf('/console/') + 1) || '/';

const routes = [
  { pattern: /^\/?$/, screen: overview, nav: 'overview' },
  { pattern: /^\/resources$/, screen: typeList, nav: 'resources' },
  { pattern: /^\/resources\/([A-Za-z]+)$/, screen: search, nav: (args) => (args[0] === 'Patient' ? 'patients' : 'resources') },
  { pattern: /^\/resource\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/, screen: resourcePage, nav: 'resources' },
  { pattern: /^\/resource\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})\/edit$/, screen: editor, nav: 'resources' },
  { pattern: /^\/new\/([A-Za-z]+)$/, screen: editor, nav: 'resources', create: true },
  { pattern: /^\/patient\/([A-Za-z0-9\-.]{1,64})$/, screen: chart, nav: 'patients' },
  { pattern: /^\/imaging$/, screen: studies, nav: 'imaging' },
  { pattern: /^\/imaging\/([0-9.]{1,64})$/, screen: studyViewer, nav: 'imaging' },
  { pattern: /^\/admin$/, screen: admin, nav: 'admin' },
  { pattern: /^\/admin\/([a-z]+)$/, screen: admin, nav: 'admin' },
];

const state = { config: null, session: null, api: null, metadata: null, renderSeq: 0 };

async function main() {
  window.addEventListener('unhandledrejection', (e) => { e.preventDefault(); fatal(e.reason); });
  window.addEventListener('error', (e) => { e.preventDefault(); fatal(e.error || e.message); });
  document.getElementById('skip').addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  const res = await fetch('config.json', { cache: 'no-store' });
  state.config = await res.json();
  state.session = new Session(state.config, root);
  state.api = new Api(root, state.session.authOff ? null : state.session);
  state.session.onChange(() => { shell(); render(); });
  if (location.pathname.endsWith('/console/callback')) {
    await callback();
    return;
  }
  shell();
  window.addEventListener('hashchange', render);
  render();
}

// callback completes a sign-in and goes to the route it started from.
async function callback() {
  const params = new URLSearchParams(location.search);
  let to = '#/';
  let problem = null;
  try {
    to = await state.session.completeCallback(params);
  } catch (e) {
    problem = e.message;
  }
  history.replaceState(null, '', location.pathname.replace(/callback$/, '') + (problem ? '#/' : to));
  shell();
  window.addEventListener('hashchange', render);
  if (problem) {
    signInScreen(problem);
  } else {
    render();
  }
}

const NAV = [
  { id: 'overview', label: 'Overview', href: '#/' },
  { id: 'resources', label: 'Resources', href: '#/resources' },
  { id: 'patients', label: 'Patients', href: '#/resources/Patient' },
  { id: 'imaging', label: 'Imaging', href: '#/imaging' },
  { id: 'admin', label: 'Admin', href: '#/admin' },
];

// shell draws the navigation and who is signed in.
function shell() {
  const s = state.session;
  const nav = document.getElementById('nav');
  const items = NAV.filter((n) => n.id !== 'admin' || (s.signedIn && isAdmin(s))).map((n) => ({ ...n }));
  if (s.signedIn && !s.staff && s.patient) {
    items.splice(0, 3, { id: 'patients', label: 'My record', href: '#/patient/' + s.patient },
      { id: 'resources', label: 'Resources', href: '#/resources' });
  }
  replace(nav, items.map((n) => h('li', null, h('a', { href: n.href, dataset: { nav: n.id } }, n.label))));
  const user = document.getElementById('user');
  if (s.authOff) {
    replace(user, h('span', { class: 'auth-off' }, 'Authorisation is off (--auth none)'));
  } else if (s.signedIn) {
    const who = s.who || {};
    replace(user,
      h('span', { id: 'who' }, 'Signed in as ', h('strong', null, who.name || 'unknown'), who.role ? ' (' + who.role + ')' : ''),
      ' ',
      h('button', { type: 'button', id: 'sign-out', onclick: () => s.signOut() }, 'Sign out'));
  } else {
    replace(user);
  }
  document.getElementById('version').textContent = 'Ember ' + (state.config.version || '');
}

// parseHash splits "#/path?query" into the path and URLSearchParams.
function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  return { path: path || '/', query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

// render shows the screen of the current route in a fresh view: an older
// screen still loading writes into its own, detached view, never into the
// new one.
function render() {
  const seq = ++state.renderSeq;
  const mainEl = document.getElementById('main');
  const s = state.session;
  if (!s.signedIn) {
    signInScreen();
    return;
  }
  const { path, query } = parseHash();
  if (path === '/' && !s.staff && s.patient) {
    location.replace('#/patient/' + encodeURIComponent(s.patient));
    return;
  }
  let route = null;
  let args = [];
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m) { route = r; args = m.slice(1).map(decodeURIComponent); break; }
  }
  for (const a of document.querySelectorAll('#nav a')) {
    const nav = route && (typeof route.nav === 'function' ? route.nav(args) : route.nav);
    if (nav && a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = h('div', { class: 'view', dataset: { state: 'loading', route: location.hash || '#/' }, 'aria-busy': 'true' });
  replace(mainEl, view);
  const ctx = {
    api: state.api,
    session: s,
    config: state.config,
    query,
    args,
    route,
    view,
    current: () => seq === state.renderSeq,
    metadata: () => metadata(),
    // heading starts a screen: its h1, the document title, and focus for
    // screen readers and keyboard users after a route change.
    heading: (text) => {
      const h1 = h('h1', { tabindex: '-1', id: 'screen-title' }, text);
      view.prepend(h1);
      document.title = text + ' — Ember Console';
      if (seq > 1) h1.focus({ preventScroll: false });
      return h1;
    },
    retitle: (text) => {
      const h1 = view.querySelector('#screen-title');
      if (h1) h1.textContent = text;
      document.title = text + ' — Ember Console';
    },
  };
  if (!route) {
    ctx.heading('Not found');
    append(view, message('missing', 'The console has no screen at ' + path + '.'));
    done(view);
    return;
  }
  Promise.resolve()
    .then(() => route.screen(ctx))
    .catch((e) => {
      if (!view.querySelector('#screen-title')) ctx.heading('Error');
      append(view, message(messageKind(e), describe(e)));
    })
    .finally(() => done(view));
}

function done(view) {
  view.dataset.state = 'ready';
  view.removeAttribute('aria-busy');
}

// metadata is the CapabilityStatement, read once.
function metadata() {
  if (!state.metadata) {
    state.metadata = state.api.fhir('metadata').catch((e) => { state.metadata = null; throw e; });
  }
  return state.metadata;
}

function signInScreen(problem) {
  const mainEl = document.getElementById('main');
  const view = h('div', { class: 'view', dataset: { state: 'ready' } });
  replace(mainEl, view);
  document.title = 'Sign in — Ember Console';
  const s = state.session;
  const why = s.canSignIn();
  const returnTo = location.hash || '#/';
  append(view,
    h('h1', { tabindex: '-1', id: 'screen-title' }, 'Sign in'),
    h('p', null, 'Ember Console works with your Ember account: you see and change what your role and the access you grant allow.'),
    problem ? message('error', problem) : null,
    why ? message('error', why) : null,
    originNotice(),
    h('button', { type: 'button', id: 'sign-in', class: 'primary', disabled: Boolean(why),
      onclick: () => s.signIn(returnTo).catch((e) => fatal(e)) }, 'Sign in'));
}

// originNotice warns when the console is opened at another origin than the
// one it is registered for: the sign-in would come back there.
function originNotice() {
  let want;
  try {
    want = new URL(state.config.redirectUri);
  } catch (e) {
    return null;
  }
  if (want.origin === location.origin) return null;
  const url = want.origin + want.pathname.replace(/callback$/, '');
  return h('p', { class: 'msg msg-info' }, 'This server signs the console in at ', h('a', { href: url }, url),
    '; a sign-in started here comes back there.');
}

// fatal shows an error the screens did not catch, without losing the page.
function fatal(err) {
  const mainEl = document.getElementById('main');
  const text = err instanceof ApiError ? describe(err) : 'Something went wrong: ' + ((err && err.message) || err);
  append(mainEl, message('error', text));
}

main().catch(fatal);
