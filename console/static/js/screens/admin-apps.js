// Admin › SMART apps: the registered clients, adding one (a symmetric
// client's secret shown this once), removing one, an app's launch URL and
// an EHR launch for a patient picked by name.
import { h, append, replace, section, message } from '../dom.js';
import { describe, messageKind } from '../api.js';
import { humanName } from '../format.js';
import { adminCall, Form, confirmBox, copyable, done, problem, absoluteURL } from './admin-common.js';

const TYPES = ['public', 'symmetric', 'asymmetric'];
const GRANTS = ['authorization_code', 'client_credentials'];
const DEFAULT_SCOPE = 'openid fhirUser launch launch/patient patient/*.rs offline_access';

export async function apps(ctx) {
  const list = section('Registered apps', 2, { id: 'apps' });
  const action = h('div', { id: 'app-action' });
  const add = section('Add an app', 2, { id: 'app-add' });
  append(ctx.view, list, action, add);
  const reload = () => listClients(ctx, list, action);
  addForm(ctx, add, reload);
  await reload();
}

async function listClients(ctx, el, action) {
  replace(el, el.firstChild);
  let clients;
  try {
    clients = (await adminCall(ctx, 'GET', 'clients')).clients || [];
  } catch (e) {
    append(el, message(messageKind(e), problem(e).text));
    return;
  }
  const reload = () => listClients(ctx, el, action);
  append(el, h('table', { id: 'clients', class: 'admin-table' },
    h('caption', null, clients.length + ' registered ' + (clients.length === 1 ? 'app' : 'apps')),
    h('thead', null, h('tr', null, ['App (client id)', 'Type', 'Redirect URIs', 'Scope', 'Grant types', 'Actions']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, clients.map((c) => clientRow(ctx, c, action, reload)))));
}

function clientRow(ctx, c, action, reload) {
  const actions = h('div', { class: 'row-actions' });
  if (c.launch_uri) {
    const launchURL = withQuery(c.launch_uri, { iss: ctx.config.fhirBase || location.origin + ctx.api.root + 'fhir' });
    append(actions,
      h('button', { type: 'button', class: 'copy-launch', dataset: { url: launchURL },
        onclick: (e) => showLaunchURL(action, c, launchURL, e.currentTarget) }, 'Launch URL', hidden(' of ' + c.id)),
      h('button', { type: 'button', class: 'ehr-launch', 'aria-controls': 'app-action',
        onclick: (e) => ehrLaunch(ctx, action, c, e.currentTarget) }, 'EHR launch…', hidden(' of ' + c.id)));
  }
  if (c.id === ctx.config.clientId) {
    append(actions, h('span', { class: 'muted' }, 'this console'));
  } else {
    append(actions, h('button', { type: 'button', class: 'danger remove-client', 'aria-controls': 'app-action', 'aria-expanded': 'false',
      onclick: (e) => confirmBox(action, {
        opener: e.currentTarget,
        id: 'confirm-remove-client',
        yes: 'Remove app ' + c.id,
        text: 'Remove the app ' + c.id + '? Its launches and refresh tokens go with it; its users must be given a new registration.',
        run: async () => {
          await adminCall(ctx, 'DELETE', 'clients/' + encodeURIComponent(c.id));
          return done('Removed the app ' + c.id + '.');
        },
        onDone: reload,
      }) }, 'Remove…', hidden(' ' + c.id)));
  }
  return h('tr', { dataset: { id: c.id } },
    h('th', { scope: 'row' }, c.id),
    h('td', null, c.type),
    h('td', { class: 'uris' }, list(c.redirect_uris), c.launch_uri ? h('p', { class: 'muted small' }, 'launch: ' + c.launch_uri) : null),
    h('td', { class: 'scope' }, c.scope || h('span', { class: 'muted' }, '(none)')),
    h('td', null, (c.grant_types || []).join(', ')),
    h('td', null, actions));
}

function hidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

function list(items) {
  if (!items || !items.length) return h('span', { class: 'muted' }, '(none)');
  return h('ul', { class: 'plain' }, items.map((u) => h('li', null, u)));
}

// withQuery adds params to url's query (the launch URI may have one).
function withQuery(url, params) {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

function showLaunchURL(action, c, url, opener) {
  replace(action, h('div', { class: 'panel', role: 'group', 'aria-label': 'Launch URL of ' + c.id },
    h('h3', null, 'Launch URL of ' + c.id),
    h('p', null, 'Open the app here, or give this URL to its users: the app starts a standalone launch at this server.'),
    copyable('launch-url-' + c.id.replace(/[^A-Za-z0-9-]/g, '-'), 'Launch URL', url),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => { replace(action); opener.focus(); } }, 'Close'))));
  action.querySelector('input').focus();
}

// ehrLaunch picks a patient by name and creates an EHR launch of c for
// them: the app's launch URL with iss and the opaque launch id.
function ehrLaunch(ctx, action, c, opener) {
  const form = new Form('launch-form', 'EHR launch of ' + c.id);
  const name = h('input', { type: 'search', autocomplete: 'off' });
  const results = h('div', { id: 'launch-results', 'aria-live': 'polite' });
  append(form.el,
    form.add('patient', 'Patient (name)', name, 'Part of the family or given name; then pick the patient.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'launch-search' }, 'Find patients'),
      h('button', { type: 'button', onclick: () => { replace(action); opener.focus(); } }, 'Close')),
    form.status);
  replace(action, h('div', { class: 'panel', role: 'group', 'aria-labelledby': 'launch-title' },
    h('h3', { id: 'launch-title' }, 'EHR launch of ' + c.id),
    h('p', null, 'Starts ' + c.id + ' as if from the patient\'s record: the app signs its user in and gets this patient as its context.'),
    form.el, results));
  name.focus();
  form.el.addEventListener('submit', async (e) => {
    e.preventDefault();
    form.clear();
    replace(results);
    const q = name.value.trim();
    if (!q) {
      form.show([{ field: 'patient', text: 'Type part of a patient\'s name.' }]);
      return;
    }
    let patients;
    try {
      const b = await ctx.api.fhir('Patient?' + new URLSearchParams({ name: q, _count: '20', _elements: 'name,birthDate,gender' }));
      patients = ((b && b.entry) || []).map((x) => x.resource).filter((r) => r && r.resourceType === 'Patient');
    } catch (err) {
      form.show([{ field: 'patient', text: describe(err, 'Patient search') }]);
      return;
    }
    if (!patients.length) {
      form.show([{ field: 'patient', text: 'No patient\'s name matches "' + q + '".' }]);
      return;
    }
    append(results, h('ul', { class: 'plain pick', id: 'launch-patients' }, patients.map((p) => {
      const label = humanName(p.name) || 'Patient/' + p.id;
      return h('li', { dataset: { id: p.id } },
        h('button', { type: 'button', class: 'launch-patient', onclick: () => createLaunch(ctx, form, results, c, p, label) },
          'Launch for ' + label),
        ' ', h('span', { class: 'muted' }, [p.gender, p.birthDate && 'born ' + p.birthDate, 'Patient/' + p.id].filter(Boolean).join(', ')));
    })));
  });
}

async function createLaunch(ctx, form, results, c, p, label) {
  form.clear();
  let l;
  try {
    l = await adminCall(ctx, 'POST', 'clients/' + encodeURIComponent(c.id) + '/launch', { patient: p.id });
  } catch (err) {
    form.refused(err);
    return;
  }
  const box = h('div', { class: 'msg msg-ok', role: 'status', id: 'launch-done', tabindex: '-1' },
    h('p', null, 'Launch created for ' + label + ' (valid for a few minutes, once).'),
    copyable('launch-url', 'Launch URL', l.url),
    h('p', null, h('a', { href: l.url, id: 'launch-open', target: '_blank', rel: 'noopener noreferrer' }, 'Open ' + c.id + ' for ' + label)));
  replace(results, box);
  box.focus();
}

// addForm registers an app: the fields of `ember client add`, checked here
// first, then by the server, whose refusal shows beside its field.
function addForm(ctx, el, reload) {
  const form = new Form('app-form', 'Add an app');
  const id = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const type = h('select', null, TYPES.map((t) => h('option', { value: t }, t)));
  const redirects = h('textarea', { rows: '3', spellcheck: 'false' });
  const launch = h('input', { type: 'url', autocomplete: 'off', spellcheck: 'false' });
  const scope = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: DEFAULT_SCOPE, class: 'wide' });
  const grants = GRANTS.map((g) => h('input', { type: 'checkbox', value: g, id: 'app-form-grant-' + g, name: 'grant_types' }));
  const jwks = h('textarea', { rows: '5', spellcheck: 'false', class: 'mono' });
  const jwksURI = h('input', { type: 'url', autocomplete: 'off', spellcheck: 'false' });
  const grantSet = form.group('grant_types', 'Grant types', grants.map((g) => h('label', { class: 'choice' }, g, ' ' + g.value)),
    'Chosen for symmetric clients only: public clients use authorization_code, asymmetric ones both.');
  const jwksField = form.add('jwks', 'JWKS (public keys, JSON)', jwks, 'A JSON Web Key Set: {"keys": [ … ]}. Or give a JWKS URI below.');
  const jwksURIField = form.add('jwks_uri', 'JWKS URI', jwksURI);
  append(form.el,
    h('div', { class: 'form-grid' },
      form.add('id', 'Client id', id, 'No spaces; the app sends it as client_id.'),
      form.add('type', 'Type', type, 'public: a browser or mobile app (PKCE); symmetric: has a secret; asymmetric: signs with its keys.')),
    form.add('redirect_uris', 'Redirect URIs', redirects, 'One absolute URL a line; where the sign-in comes back.'),
    form.add('launch_uri', 'Launch URI', launch, 'Optional: the app\'s launch page, for EHR launches.'),
    form.add('scope', 'Scopes', scope, 'Space-separated; what the app may ask for (users get at most their role\'s).'),
    grantSet, jwksField, jwksURIField,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'app-add-submit' }, 'Add app')),
    form.status);
  append(el, form.el);
  const sync = () => {
    const asym = type.value === 'asymmetric';
    jwksField.hidden = !asym;
    jwksURIField.hidden = !asym;
    for (const g of grants) g.disabled = type.value !== 'symmetric';
  };
  type.addEventListener('change', sync);
  sync();
  form.el.addEventListener('submit', async (e) => {
    e.preventDefault();
    form.clear();
    const body = {
      id: id.value.trim(),
      type: type.value,
      redirect_uris: redirects.value.split('\n').map((s) => s.trim()).filter(Boolean),
      scope: scope.value.trim().split(/\s+/).filter(Boolean).join(' '),
      grant_types: type.value === 'symmetric' ? grants.filter((g) => g.checked).map((g) => g.value) : [],
    };
    if (launch.value.trim()) body.launch_uri = launch.value.trim();
    const errors = checkClient(body, type.value === 'asymmetric' ? jwks.value.trim() : '', jwksURI.value.trim());
    if (errors.length) {
      form.show(errors);
      return;
    }
    if (type.value === 'asymmetric') {
      if (jwks.value.trim()) body.jwks = JSON.parse(jwks.value);
      if (jwksURI.value.trim()) body.jwks_uri = jwksURI.value.trim();
    }
    let c;
    try {
      c = await adminCall(ctx, 'POST', 'clients', body);
    } catch (err) {
      form.refused(err);
      return;
    }
    const note = done('Added the app ' + c.id + '.');
    if (c.secret) {
      append(note, h('p', null, h('strong', null, 'Its secret is shown this once: '), 'copy it now and give it to the app\'s operator.'),
        copyable('client-secret', 'Client secret of ' + c.id, c.secret));
    }
    form.ok(note);
    form.el.reset();
    scope.value = DEFAULT_SCOPE;
    sync();
    await reload();
    const secret = note.querySelector('#client-secret');
    if (secret) secret.focus();
  });
}

// checkClient is the server's rules that need no database, so a mistake
// shows before the round trip.
function checkClient(c, jwksText, jwksURI) {
  const errors = [];
  const bytes = new TextEncoder().encode(c.id).length;
  if (!c.id || bytes > 256 || /[\s\p{Cc}]/u.test(c.id)) {
    errors.push({ field: 'id', text: 'Required: at most 256 bytes, without spaces or control characters.' });
  }
  const authCode = c.type !== 'symmetric' || !c.grant_types.length || c.grant_types.includes('authorization_code');
  if (c.type !== 'asymmetric' && authCode && !c.redirect_uris.length) {
    errors.push({ field: 'redirect_uris', text: 'At least one redirect URI is required for the authorization code grant.' });
  }
  const bad = c.redirect_uris.find((u) => !absoluteURL(u) || u.length > 2048);
  if (bad) errors.push({ field: 'redirect_uris', text: '"' + bad + '" is not an absolute URL without fragment.' });
  if (c.launch_uri && (!absoluteURL(c.launch_uri) || c.launch_uri.length > 2048)) {
    errors.push({ field: 'launch_uri', text: 'Not an absolute URL without fragment.' });
  }
  if (!authCode && (c.redirect_uris.length || c.launch_uri)) {
    errors.push({ field: 'redirect_uris', text: 'Redirect and launch URIs are for the authorization_code grant: tick it, or leave them out for a service.' });
  }
  if (c.type === 'symmetric' && c.grant_types.includes('client_credentials') && !c.scope.split(' ').some((s) => s.startsWith('system/'))) {
    errors.push({ field: 'scope', text: 'A client_credentials client needs system/ scopes (system/*.rs, …).' });
  }
  if (c.type === 'asymmetric') {
    if (!jwksText && !jwksURI) errors.push({ field: 'jwks', text: 'An asymmetric client needs a JWKS or a JWKS URI.' });
    if (jwksText) {
      let set = null;
      try { set = JSON.parse(jwksText); } catch (e) { errors.push({ field: 'jwks', text: 'Not JSON: ' + e.message }); }
      if (set !== null && (!set || !Array.isArray(set.keys) || !set.keys.length)) {
        errors.push({ field: 'jwks', text: 'Not a JSON Web Key Set with keys ({"keys": [ … ]}).' });
      } else if (set && set.keys.some((k) => k && (k.d || k.p || k.q || k.k))) {
        errors.push({ field: 'jwks', text: 'Holds a private key: register public keys only.' });
      }
    }
    if (jwksURI && !absoluteURL(jwksURI)) errors.push({ field: 'jwks_uri', text: 'Not an absolute URL without fragment.' });
  }
  return errors;
}
