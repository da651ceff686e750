// One resource: its narrative (sanitised), its JSON, its versions with a
// line diff between any two, delete with confirmation; and the JSON editor
// for create and update with live $validate.
import { h, append, replace, section, message, link } from '../dom.js';
import { ApiError, describe, messageKind } from '../api.js';
import { pretty, lines, lineOf, lineAt, JSONSyntaxError } from '../json.js';
import { diffLines, hunks } from '../diff.js';
import { sanitize } from '../narrative.js';
import { summary, date, refId } from '../format.js';

export async function resourcePage(ctx) {
  const [type, id] = ctx.args;
  const label = type + '/' + id;
  ctx.heading(label);
  let raw;
  try {
    raw = await ctx.api.fhirRaw(type + '/' + encodeURIComponent(id));
  } catch (e) {
    append(ctx.view, message(messageKind(e), describe(e, label)));
    return;
  }
  const r = JSON.parse(raw.text);
  append(ctx.view, h('p', { class: 'muted', id: 'resource-summary' }, summary(r) || ''),
    h('p', { class: 'muted' }, 'Version ' + ((r.meta && r.meta.versionId) || '?') + ', last updated ' + date(r.meta && r.meta.lastUpdated)));

  const actions = h('div', { class: 'actions' });
  append(ctx.view, actions);
  const patient = type === 'Patient' ? id : refId(r.subject, 'Patient') || refId(r.patient, 'Patient');
  if (patient) append(actions, h('a', { class: 'button', href: '#/patient/' + patient, id: 'open-chart' }, 'Patient chart'));
  if (ctx.session.can(type, 'u')) append(actions, h('a', { class: 'button', href: '#/resource/' + type + '/' + id + '/edit', id: 'edit' }, 'Edit'));
  if (ctx.session.can(type, 'd')) {
    const status = h('div', { id: 'delete-status' });
    const del = h('button', { type: 'button', class: 'danger', id: 'delete', 'aria-expanded': 'false', 'aria-controls': 'delete-status' }, 'Delete…');
    del.addEventListener('click', () => confirmDelete(ctx, type, id, del, status));
    append(actions, del);
    append(ctx.view, status);
  }

  const narrative = section('Narrative');
  if (r.text && r.text.div) {
    append(narrative, h('p', { class: 'muted' }, 'Status: ' + (r.text.status || 'unknown')),
      append(h('div', { class: 'narrative', id: 'narrative' }), sanitize(r.text.div)));
  } else {
    append(narrative, h('p', { class: 'muted' }, 'This resource has no narrative.'));
  }
  const json = section('JSON');
  append(json, h('pre', { class: 'json', id: 'json', tabindex: '0', 'aria-label': 'JSON of ' + label }, pretty(raw.text)));
  const hist = section('History', 2, { id: 'history' });
  append(ctx.view, narrative, json, hist);
  await history(ctx, type, id, hist);
}

function confirmDelete(ctx, type, id, button, status) {
  button.setAttribute('aria-expanded', 'true');
  const yes = h('button', { type: 'button', class: 'danger primary', id: 'confirm-delete' }, 'Delete ' + type + '/' + id);
  const no = h('button', { type: 'button' }, 'Cancel');
  const box = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm delete' },
    h('p', null, 'Delete ' + type + '/' + id + '? Reads will answer "deleted"; the history keeps every earlier version.'),
    h('div', { class: 'actions' }, yes, no));
  replace(status, box);
  no.addEventListener('click', () => { replace(status); button.setAttribute('aria-expanded', 'false'); button.focus(); });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await ctx.api.request(ctx.api.fhirURL(type + '/' + encodeURIComponent(id)), { method: 'DELETE' });
      replace(status, h('p', { class: 'msg msg-ok', role: 'status', tabindex: '-1' }, 'Deleted ' + type + '/' + id + '. ',
        link('/resources/' + type, 'Back to ' + type)));
      button.disabled = true;
    } catch (e) {
      replace(status, message(messageKind(e), describe(e, 'Not deleted')));
    }
    const focusable = status.querySelector('[tabindex], p');
    if (focusable) { focusable.setAttribute('tabindex', '-1'); focusable.focus(); }
  });
  yes.focus();
}

async function history(ctx, type, id, el) {
  let b;
  try {
    b = await ctx.api.fhir(type + '/' + encodeURIComponent(id) + '/_history?_count=100');
  } catch (e) {
    append(el, message(messageKind(e), describe(e, 'History')));
    return;
  }
  const versions = ((b && b.entry) || []).map((e) => ({
    vid: (e.resource && e.resource.meta && e.resource.meta.versionId) || versionFromURL(e.fullUrl, e.response),
    when: (e.resource && e.resource.meta && e.resource.meta.lastUpdated) || (e.response && e.response.lastModified) || '',
    method: (e.request && e.request.method) || '',
    deleted: !e.resource,
  }));
  append(el, h('table', { id: 'versions' },
    h('caption', null, versions.length + ' version' + (versions.length === 1 ? '' : 's') + ', newest first'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col' }, 'Recorded'), h('th', { scope: 'col' }, 'Change'))),
    h('tbody', null, versions.map((v) => h('tr', null,
      h('td', null, v.vid || '?'), h('td', null, date(v.when)),
      h('td', null, v.deleted ? 'deleted' : ({ POST: 'created', PUT: 'updated', PATCH: 'patched' }[v.method] || v.method)))))));
  const live = versions.filter((v) => !v.deleted && v.vid);
  if (live.length < 2) return;
  const from = h('select', { id: 'diff-from' }, live.map((v) => h('option', { value: v.vid }, 'version ' + v.vid)));
  const to = h('select', { id: 'diff-to' }, live.map((v) => h('option', { value: v.vid }, 'version ' + v.vid)));
  from.value = live[1].vid;
  to.value = live[0].vid;
  const out = h('div', { id: 'diff', 'aria-live': 'polite' });
  const form = h('form', { class: 'searchopts', 'aria-label': 'Compare versions' },
    h('div', { class: 'field' }, h('label', { for: 'diff-from' }, 'From'), from),
    h('div', { class: 'field' }, h('label', { for: 'diff-to' }, 'To'), to),
    h('button', { type: 'submit', id: 'diff-run' }, 'Compare'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(out, h('p', { class: 'muted' }, 'Comparing…'));
    try {
      const [a, bb] = await Promise.all([from.value, to.value].map((v) =>
        ctx.api.fhirRaw(type + '/' + encodeURIComponent(id) + '/_history/' + encodeURIComponent(v))));
      showDiff(out, pretty(a.text), pretty(bb.text), from.value, to.value);
    } catch (err) {
      replace(out, message(messageKind(err), describe(err, 'Compare')));
    }
  });
  append(el, h('h3', null, 'Compare two versions'), form, out);
}

function versionFromURL(fullUrl, response) {
  const m = /_history\/([^/]+)$/.exec((response && response.location) || fullUrl || '');
  return m ? m[1] : '';
}

function showDiff(out, a, b, va, vb) {
  let d;
  try {
    d = diffLines(a, b);
  } catch (e) {
    replace(out, message('info', e.message));
    return;
  }
  const changed = d.filter((l) => l.op !== ' ').length;
  if (!changed) {
    replace(out, h('p', { id: 'diff-summary' }, 'Versions ' + va + ' and ' + vb + ' have the same content.'));
    return;
  }
  const added = d.filter((l) => l.op === '+').length;
  const pre = h('pre', { class: 'diff', tabindex: '0', 'aria-label': 'Differences from version ' + va + ' to ' + vb },
    hunks(d).map((l) => {
      if (l.op === '…') return h('span', { class: 'diff-line diff-skip' }, '  … ' + l.count + ' unchanged line' + (l.count === 1 ? '' : 's'));
      const cls = l.op === '+' ? 'diff-add' : l.op === '-' ? 'diff-del' : '';
      return h('span', { class: 'diff-line ' + cls }, (l.op === '-' ? '− ' : l.op + ' ') + l.text);
    }));
  replace(out, h('p', { id: 'diff-summary' }, added + ' line' + (added === 1 ? '' : 's') + ' added, ' + (changed - added) +
    ' removed, from version ' + va + ' to ' + vb + ' (+ added, − removed).'), pre);
}

// editor creates (#/new/Type) or updates (#/resource/Type/id/edit) a
// resource as JSON, validating as you type.
export async function editor(ctx) {
  const create = Boolean(ctx.route.create);
  const [type, id] = ctx.args;
  const label = create ? 'New ' + type : 'Edit ' + type + '/' + id;
  ctx.heading(label);
  let text = '{\n  "resourceType": "' + type + '"\n}';
  let etag = null;
  if (!create) {
    try {
      const raw = await ctx.api.fhirRaw(type + '/' + encodeURIComponent(id));
      text = pretty(raw.text);
      etag = raw.res.headers.get('ETag');
    } catch (e) {
      append(ctx.view, message(messageKind(e), describe(e, type + '/' + id)));
      return;
    }
  }
  if (!ctx.session.can(type, create ? 'c' : 'u')) {
    append(ctx.view, message('denied', 'Your access does not seem to allow ' + (create ? 'creating' : 'changing') + ' ' + type + '; the server will decide when you save.'));
  }
  const ed = new Editor(ctx, type, create ? null : id, text);
  const status = h('div', { id: 'save-status', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', class: 'primary', id: 'save' }, create ? 'Create' : 'Save');
  const form = h('form', { id: 'editor-form', 'aria-label': label },
    h('label', { for: 'editor', id: 'editor-label' }, type + ' as JSON'),
    h('p', { class: 'muted', id: 'editor-help' }, 'Checked with $validate as you type; problems appear beside their line and are listed below.'),
    ed.el,
    h('div', { class: 'actions' }, save,
      h('button', { type: 'button', id: 'format', onclick: () => ed.format() }, 'Format'),
      link(create ? '/resources/' + type : '/resource/' + type + '/' + id, 'Cancel')),
    status,
    ed.issuesEl);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    save.disabled = true;
    replace(status, h('p', { class: 'muted' }, 'Saving…'));
    try {
      const path = create ? type : type + '/' + encodeURIComponent(id);
      const headers = etag ? { 'If-Match': etag } : {};
      const res = await ctx.api.request(ctx.api.fhirURL(path), { method: create ? 'POST' : 'PUT', body: ed.text(), headers });
      const body = await res.json().catch(() => null);
      const newID = (body && body.id) || locationID(res.headers.get('Location')) || id;
      location.hash = '#/resource/' + type + '/' + newID;
    } catch (err) {
      replace(status, message(messageKind(err) === 'denied' ? 'denied' : 'error', describe(err, 'Not saved')));
      if (err instanceof ApiError && err.issues.length) ed.show(err.issues, 'save');
      save.disabled = false;
    }
  });
  append(ctx.view, form);
  await ed.validate();
}

function locationID(loc) {
  const m = /\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(loc || '');
  return m ? m[2] : null;
}

// Editor is the textarea with a line-number column and a notes column
// beside it; an issue's note sits on the line its expression names.
class Editor {
  constructor(ctx, type, id, text) {
    this.ctx = ctx;
    this.type = type;
    this.id = id;
    this.seq = 0;
    this.area = h('textarea', { id: 'editor', spellcheck: 'false', wrap: 'off', autocomplete: 'off',
      'aria-describedby': 'editor-help editor-issues' });
    this.area.value = text;
    this.linesEl = h('div', { class: 'editor-lines', 'aria-hidden': 'true' });
    this.notesEl = h('div', { class: 'editor-notes', id: 'editor-notes', 'aria-hidden': 'true' });
    this.el = h('div', { class: 'editor' }, this.linesEl, this.area, this.notesEl);
    this.list = h('ul');
    this.summary = h('p', { id: 'validation-summary' }, 'Not checked yet.');
    this.issuesEl = h('div', { class: 'issues', id: 'editor-issues', role: 'status' },
      h('h2', null, 'Validation'), this.summary, this.list);
    this.area.addEventListener('scroll', () => this.sync());
    let timer = null;
    this.area.addEventListener('input', () => {
      this.gutter([]);
      clearTimeout(timer);
      timer = setTimeout(() => this.validate(), 400);
    });
    this.gutter([]);
  }

  text() { return this.area.value; }

  sync() {
    this.linesEl.scrollTop = this.area.scrollTop;
    this.notesEl.scrollTop = this.area.scrollTop;
  }

  format() {
    try {
      this.area.value = pretty(this.area.value);
      this.validate();
    } catch (e) {
      this.validate();
    }
  }

  // validate checks the syntax here, then asks the server's $validate.
  async validate() {
    const seq = ++this.seq;
    const text = this.area.value;
    try {
      lines(text);
    } catch (e) {
      if (!(e instanceof JSONSyntaxError)) throw e;
      this.show([{ severity: 'error', diagnostics: 'JSON: ' + e.message, line: lineAt(text, e.pos) }], 'syntax');
      return;
    }
    const path = this.id ? this.type + '/' + encodeURIComponent(this.id) + '/$validate?mode=update' : this.type + '/$validate?mode=create';
    let outcome;
    try {
      outcome = await this.ctx.api.fhir(path, { method: 'POST', body: text });
    } catch (e) {
      if (seq !== this.seq) return;
      if (e instanceof ApiError && e.issues.length && e.kind === 'invalid') {
        this.show(e.issues, 'validate');
      } else {
        this.summary.textContent = describe(e, 'Validation');
        replace(this.list);
        this.gutter([]);
      }
      return;
    }
    if (seq !== this.seq) return;
    this.show((outcome && outcome.issue) || [], 'validate');
  }

  // show lists issues and puts each beside its line; source says where
  // they came from (syntax, validate, save).
  show(issues, source) {
    const text = this.area.value;
    let map = null;
    try { map = lines(text); } catch (e) { map = null; }
    const shown = [];
    for (const i of issues) {
      if (i.severity === 'information') continue;
      const expr = (i.expression && i.expression[0]) || (i.location && i.location[0]) || '';
      const line = i.line || (map && expr ? lineOf(map, expr, this.type) : 1);
      shown.push({ severity: i.severity === 'warning' ? 'warning' : 'error', expr, line, text: i.diagnostics || (i.details && i.details.text) || i.code || 'problem' });
    }
    shown.sort((a, b) => a.line - b.line);
    const errors = shown.filter((s) => s.severity === 'error').length;
    const what = source === 'save' ? 'The server refused to save: ' : '';
    this.summary.textContent = shown.length
      ? what + errors + ' error' + (errors === 1 ? '' : 's') + ', ' + (shown.length - errors) + ' warning' + (shown.length - errors === 1 ? '' : 's') + '.'
      : 'Valid: $validate reports no problems.';
    this.summary.className = shown.length ? (errors ? 'issue-error' : 'issue-warning') : 'msg-ok';
    replace(this.list, shown.map((s) => h('li', { class: 'issue-' + s.severity, dataset: { line: s.line, expression: s.expr, source } },
      h('button', { type: 'button', onclick: () => this.goto(s.line) }, 'Line ' + s.line + (s.expr ? ', ' + s.expr : '')),
      ': ' + s.text)));
    this.gutter(shown, source);
  }

  // gutter redraws the line numbers and the notes column.
  gutter(shown, source) {
    const n = this.area.value.split('\n').length;
    const byLine = new Map();
    for (const s of shown) {
      if (!byLine.has(s.line)) byLine.set(s.line, []);
      byLine.get(s.line).push(s);
    }
    const nums = [];
    const notes = [];
    for (let k = 1; k <= n; k++) {
      const here = byLine.get(k);
      nums.push(h('div', { class: here ? 'has-issue' : null }, String(k)));
      if (here) {
        const sev = here.some((s) => s.severity === 'error') ? 'error' : 'warning';
        notes.push(h('div', { class: 'editor-note note-' + sev, title: here.map((s) => s.text).join('; '),
          dataset: Object.assign({ line: k, expression: here.map((s) => s.expr).join(' ') }, source ? { source } : {}) }, here.map((s) => s.text).join('; ')));
      } else {
        notes.push(h('div'));
      }
    }
    replace(this.linesEl, nums);
    replace(this.notesEl, notes);
    this.sync();
  }

  goto(line) {
    const all = this.area.value.split('\n');
    let start = 0;
    for (let k = 0; k < line - 1 && k < all.length; k++) start += all[k].length + 1;
    this.area.focus();
    this.area.setSelectionRange(start, start + (all[line - 1] || '').length);
    const lh = 20;
    this.area.scrollTop = Math.max(0, (line - 5) * lh);
    this.sync();
  }
}
