// Admin › Bulk exports: start a system or all-patients $export (Bulk Data
// IG: kick-off with Prefer: respond-async), follow its status URL until the
// manifest arrives, download its files with the user's token (saved
// through a blob: URL), cancel one. The exports started in this tab are
// kept in sessionStorage, per user, so a reload finds them again.
import { h, append, replace, section, message } from '../dom.js';
import { ApiError, describe } from '../api.js';
import { Form, confirmBox, done } from './admin-common.js';

const STORE_PREFIX = 'ember-console.exports.';
const LEVELS = { system: { label: 'Everything (system level)', path: '$export' }, patient: { label: 'All patients\' data (Patient/$export)', path: 'Patient/$export' } };
const MAX_KEPT = 20;

// storeKey is where the signed-in user's exports are kept: another user
// signing in in this tab does not inherit the list.
function storeKey(ctx) {
  return STORE_PREFIX + ((ctx.session.who && ctx.session.who.name) || 'anonymous');
}

function load(key) {
  try {
    const v = JSON.parse(sessionStorage.getItem(key) || '[]');
    return Array.isArray(v) ? v.filter((x) => x && typeof x.status === 'string') : [];
  } catch (e) {
    return [];
  }
}

function save(key, list) {
  sessionStorage.setItem(key, JSON.stringify(list.slice(0, MAX_KEPT)));
}

function update(key, status, changes) {
  const list = load(key);
  const x = list.find((e) => e.status === status);
  if (x) Object.assign(x, changes);
  save(key, list);
  return x || Object.assign({ status }, changes);
}

// sameOrigin is a status or file URL the console may fetch (connect-src
// 'self'): the server's absolute URL, on this origin.
function sameOrigin(url) {
  const u = new URL(url, location.href);
  return u.origin === location.origin ? u.href : location.origin + u.pathname + u.search;
}

export async function exportsScreen(ctx) {
  const start = section('Start an export', 2, { id: 'export-start' });
  const list = section('Exports started in this tab', 2, { id: 'exports' });
  append(ctx.view, start, list);
  const tbody = h('tbody');
  const table = h('table', { id: 'export-table', class: 'admin-table' },
    h('caption', null, 'Newest first; kept while this tab is open'),
    h('thead', null, h('tr', null, ['Started', 'Request', 'State', 'Files', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const empty = message('info', 'No export started in this tab yet.');
  append(list, empty, table);
  const rows = new Map();
  const key = storeKey(ctx);
  const show = () => {
    const all = load(key);
    empty.hidden = all.length > 0;
    table.hidden = all.length === 0;
    for (const x of all) {
      if (!rows.has(x.status)) {
        const row = exportRow(ctx, key, x);
        rows.set(x.status, row);
        tbody.append(row.tr);
      }
    }
    // Newest first.
    for (const x of all.slice().reverse()) tbody.prepend(rows.get(x.status).tr);
  };
  let types = [];
  try {
    const m = await ctx.metadata();
    const rest = (m.rest || []).find((r) => r.mode === 'server') || (m.rest || [])[0] || {};
    types = (rest.resource || []).map((r) => r.type);
  } catch (e) {
    // Types are then checked by the server alone.
  }
  startForm(ctx, start, types, (x) => {
    save(key, [x, ...load(key)]);
    show();
    const row = rows.get(x.status);
    row.poll();
    row.tr.querySelector('.state').focus();
  });
  show();
  for (const row of rows.values()) row.poll();
}

function startForm(ctx, el, types, started) {
  const form = new Form('export-form', 'Start an export');
  const level = h('select', null, Object.entries(LEVELS).map(([k, v]) => h('option', { value: k }, v.label)));
  const typeList = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', list: 'export-types', placeholder: 'Patient, Observation' });
  const since = h('input', { type: 'datetime-local', step: '1' });
  append(form.el,
    h('datalist', { id: 'export-types' }, types.map((t) => h('option', { value: t }))),
    h('div', { class: 'form-grid' },
      form.add('level', 'What', level),
      form.add('_type', 'Resource types', typeList, 'Optional, comma-separated; empty for every type you may read.'),
      form.add('_since', 'Changed since', since, 'Optional: only resources changed after this time (your time zone).')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'export-submit' }, 'Start export')),
    form.status);
  append(el, form.el);
  form.el.addEventListener('submit', async (e) => {
    e.preventDefault();
    form.clear();
    const q = new URLSearchParams();
    const errors = [];
    const wanted = typeList.value.split(',').map((t) => t.trim()).filter(Boolean);
    const unknown = types.length ? wanted.filter((t) => !types.includes(t)) : [];
    if (unknown.length) errors.push({ field: '_type', text: 'Not a resource type of this server: ' + unknown.join(', ') + '.' });
    if (wanted.length) q.set('_type', [...new Set(wanted)].join(','));
    if (since.value) {
      const t = new Date(since.value);
      if (Number.isNaN(t.getTime())) errors.push({ field: '_since', text: 'Not a date and time.' });
      else if (t.getTime() > Date.now()) errors.push({ field: '_since', text: 'In the future: nothing would be exported.' });
      else q.set('_since', t.toISOString());
    }
    if (errors.length) {
      form.show(errors);
      return;
    }
    const path = LEVELS[level.value].path + (q.toString() ? '?' + q.toString() : '');
    let res;
    try {
      res = await ctx.api.request(ctx.api.fhirURL(path), { headers: { Prefer: 'respond-async', Accept: 'application/fhir+json' } });
    } catch (err) {
      form.refused(err);
      return;
    }
    const loc = res.headers.get('Content-Location');
    if (res.status !== 202 || !loc) {
      form.show([{ field: '', text: 'The server answered ' + res.status + ' without a status URL.' }]);
      return;
    }
    form.ok(done('Export started.'));
    started({ status: sameOrigin(loc), request: decodeURIComponent(path), started: new Date().toISOString(), state: 'queued' });
  });
}

// exportRow is one export's row, with poll() to follow it.
function exportRow(ctx, key, x) {
  const state = h('td', { class: 'state', tabindex: '-1', 'aria-live': 'polite' });
  const files = h('td', { class: 'files' });
  const actions = h('td', { class: 'row-actions' });
  const status = h('div', { class: 'export-status' });
  const tr = h('tr', { dataset: { status: x.status } },
    h('td', null, new Date(x.started).toLocaleString()),
    h('th', { scope: 'row' }, h('code', null, x.request)),
    state, files, h('td', null, actions, status));
  let timer = null;
  const draw = (e) => {
    tr.dataset.state = e.state;
    replace(state, stateText(e));
    replace(files, e.files && e.files.length ? h('ul', { class: 'plain' }, e.files.map((f) => fileItem(ctx, f))) :
      h('span', { class: 'muted' }, e.state === 'complete' ? 'no resources' : '—'));
    replace(actions);
    if (e.state === 'queued' || e.state === 'running' || e.state === 'complete') {
      append(actions, h('button', { type: 'button', class: 'danger cancel-export', 'aria-expanded': 'false',
        onclick: (ev) => confirmBox(status, {
          opener: ev.currentTarget,
          id: 'confirm-cancel-export',
          yes: e.state === 'complete' ? 'Delete this export' : 'Cancel this export',
          text: e.state === 'complete' ? 'Delete this export\'s files from the server?' : 'Cancel this export? Its files so far are deleted.',
          run: async () => {
            clearTimeout(timer);
            try {
              await ctx.api.request(x.status, { method: 'DELETE', headers: { Accept: 'application/fhir+json' } });
            } catch (err) {
              if (!(err instanceof ApiError && err.kind === 'missing')) throw err;
            }
            draw(update(key, x.status, { state: 'cancelled', files: [] }));
            return done(e.state === 'complete' ? 'Deleted.' : 'Cancelled.');
          },
        }) }, e.state === 'complete' ? 'Delete…' : 'Cancel…'));
    }
  };
  const poll = async () => {
    const e = load(key).find((y) => y.status === x.status);
    draw(e || x);
    if (!e || (e.state !== 'queued' && e.state !== 'running') || !ctx.current()) return;
    let res;
    let failed = null;
    try {
      res = await ctx.api.request(x.status, { headers: { Accept: 'application/json' } });
    } catch (err) {
      failed = err;
    }
    // Cancelled while the request was out: the answer is stale.
    const now = load(key).find((y) => y.status === x.status);
    if (now && now.state === 'cancelled') return;
    if (failed) {
      const gone = failed instanceof ApiError && failed.kind === 'missing';
      draw(update(key, x.status, gone ? { state: 'gone' } : { state: 'failed', error: describe(failed) }));
      return;
    }
    if (res.status === 202) {
      draw(update(key, x.status, { state: 'running', progress: res.headers.get('X-Progress') || 'in progress' }));
      const wait = Math.min(Math.max(Number(res.headers.get('Retry-After')) || 2, 1), 10);
      timer = setTimeout(() => { if (ctx.current()) poll(); }, wait * 1000);
      return;
    }
    const manifest = await res.json();
    const out = (manifest.output || []).map((f) => ({ type: f.type, url: sameOrigin(f.url), count: f.count }));
    const errs = (manifest.error || []).length;
    draw(update(key, x.status, { state: 'complete', files: out, progress: errs ? errs + ' error files' : '' }));
  };
  return { tr, poll };
}

function stateText(e) {
  switch (e.state) {
    case 'queued': return 'queued';
    case 'running': return e.progress || 'in progress';
    case 'complete': return h('span', { class: 'ok' }, 'complete', e.progress ? ' (' + e.progress + ')' : '');
    case 'cancelled': return 'cancelled';
    case 'gone': return h('span', { class: 'muted' }, 'expired or deleted');
    case 'failed': return h('span', { class: 'err' }, 'failed: ' + (e.error || ''));
    default: return e.state || '';
  }
}

// fileItem downloads one output file: fetched with the bearer token, then
// saved from a blob: URL (the file URL itself needs the token).
function fileItem(ctx, f) {
  const name = f.url.slice(f.url.lastIndexOf('/') + 1) || f.type + '.ndjson';
  const note = h('span', { class: 'muted', role: 'status' });
  const btn = h('button', { type: 'button', class: 'download', dataset: { url: f.url, name } },
    'Download ' + name, f.count != null ? ' (' + f.count + ' ' + f.type + ')' : '');
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    note.textContent = ' downloading…';
    try {
      const res = await ctx.api.request(f.url, { headers: { Accept: 'application/fhir+ndjson' } });
      const blob = await res.blob();
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60000);
      note.textContent = ' saved (' + blob.size.toLocaleString('en') + ' bytes)';
    } catch (err) {
      note.textContent = ' ' + describe(err, 'not downloaded');
    }
    btn.disabled = false;
  });
  return h('li', null, btn, note);
}
