// Resources: every type the server supports with its count, and per type a
// search builder over the search parameters the CapabilityStatement lists,
// with results in a table that pages by the Bundle's next/previous links.
import { h, append, replace, section, message, link, routeWithQuery } from '../dom.js';
import { describe, messageKind, linkQuery } from '../api.js';
import { summary, date } from '../format.js';
import { COMMON_TYPES } from './overview.js';

// capabilities is the CapabilityStatement's rest.resource entries by type.
async function capabilities(ctx) {
  const m = await ctx.metadata();
  const rest = (m.rest || []).find((r) => r.mode === 'server') || (m.rest || [])[0] || {};
  const out = new Map();
  for (const r of rest.resource || []) out.set(r.type, r);
  return { types: out, common: rest.searchParam || [] };
}

// pool runs fn over items, at most n at a time.
async function pool(items, n, fn) {
  let next = 0;
  const worker = async () => { while (next < items.length) await fn(items[next++]); };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

export async function typeList(ctx) {
  ctx.heading('Resources');
  const { types } = await capabilities(ctx);
  const names = [...types.keys()].sort((a, b) => {
    const ca = COMMON_TYPES.indexOf(a);
    const cb = COMMON_TYPES.indexOf(b);
    if (ca >= 0 || cb >= 0) return (ca < 0 ? 99 : ca) - (cb < 0 ? 99 : cb);
    return a.localeCompare(b);
  });
  const filter = h('input', { id: 'type-filter', type: 'search', autocomplete: 'off' });
  const tbody = h('tbody');
  const rows = [];
  append(ctx.view,
    h('div', { class: 'field typefilter' }, h('label', { for: 'type-filter' }, 'Filter types'), filter),
    h('table', { id: 'types' },
      h('caption', null, names.length + ' resource types; the common ones first'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col', class: 'num' }, 'Count'), h('th', { scope: 'col' }, 'New'))),
      tbody));
  for (const type of names) {
    const cell = h('td', { class: 'num', dataset: { type } }, ctx.session.can(type, 's') ? '…' : h('span', { class: 'denied' }, 'not permitted'));
    const tr = h('tr', { dataset: { type } },
      h('th', { scope: 'row' }, link('/resources/' + type, type)),
      cell,
      h('td', null, ctx.session.can(type, 'c') ? link('/new/' + type, 'New', h('span', { class: 'visually-hidden' }, ' ' + type)) : ''));
    rows.push({ type, tr, cell });
    append(tbody, tr);
  }
  filter.addEventListener('input', () => {
    const f = filter.value.trim().toLowerCase();
    for (const r of rows) r.tr.hidden = Boolean(f) && !r.type.toLowerCase().includes(f);
  });
  // Counts arrive one by one; the list is usable at once.
  ctx.view.dataset.state = 'ready';
  await pool(rows.filter((r) => ctx.session.can(r.type, 's')), 6, async (r) => {
    if (!ctx.current()) return;
    try {
      const n = await ctx.api.count(r.type);
      replace(r.cell, n == null ? '?' : n.toLocaleString('en'));
    } catch (e) {
      replace(r.cell, h('span', { class: messageKind(e) === 'denied' ? 'denied' : 'muted' }, describe(e)));
    }
  });
}

// Modifiers and prefixes per search parameter type (FHIR R4 search, as
// Ember answers them).
const MODIFIERS = {
  string: ['exact', 'contains', 'missing'],
  token: ['not', 'text', 'of-type', 'in', 'not-in', 'missing'],
  reference: ['identifier', 'missing'],
  uri: ['above', 'below', 'missing'],
  date: ['missing'],
  number: ['missing'],
  quantity: ['missing'],
  composite: ['missing'],
  special: [],
};
const PREFIXED = new Set(['date', 'number', 'quantity']);
const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'];
const RESULT_PARAMS = new Set(['_count', '_sort', '_cursor', '_summary', '_elements', '_total', '_include', '_revinclude', '_format']);

let criterionSeq = 0;

export async function search(ctx) {
  const type = ctx.args[0];
  ctx.heading(type);
  const { types, common } = await capabilities(ctx);
  const cap = types.get(type);
  if (!cap) {
    append(ctx.view, message('missing', 'This server does not support ' + type + '.'));
    return;
  }
  const params = new Map();
  for (const p of [...(cap.searchParam || []), ...common]) if (!params.has(p.name)) params.set(p.name, p);
  const names = [...params.keys()].sort((a, b) => (a.startsWith('_') - b.startsWith('_')) || a.localeCompare(b));

  const actions = h('div', { class: 'actions' }, link('/resources', 'All types'));
  if (ctx.session.can(type, 'c')) append(actions, h('a', { class: 'button', href: '#/new/' + type }, 'New ' + type));
  append(ctx.view, actions);

  // The builder, filled from the route's query.
  const list = h('div', { class: 'criteria', role: 'group', 'aria-label': 'Search criteria' });
  const addCriterion = (name, modifier, prefix, value) => {
    const n = ++criterionSeq;
    const id = (s) => 'c' + n + '-' + s;
    const param = h('select', { id: id('param') }, names.map((p) => h('option', { value: p }, p + ' (' + params.get(p).type + ')')));
    const mod = h('select', { id: id('mod') });
    const pre = h('select', { id: id('prefix') });
    const val = h('input', { id: id('value'), type: 'text', autocomplete: 'off' });
    const preField = h('div', { class: 'field' }, h('label', { for: id('prefix') }, 'Prefix'), pre);
    const row = h('div', { class: 'criterion', role: 'group', 'aria-label': 'Criterion ' + n },
      h('div', { class: 'field' }, h('label', { for: id('param') }, 'Parameter'), param),
      h('div', { class: 'field' }, h('label', { for: id('mod') }, 'Modifier'), mod),
      preField,
      h('div', { class: 'field value' }, h('label', { for: id('value') }, 'Value'), val),
      h('button', { type: 'button', class: 'danger', onclick: () => { row.remove(); } }, 'Remove', h('span', { class: 'visually-hidden' }, ' criterion ' + n)));
    const sync = () => {
      const t = (params.get(param.value) || {}).type;
      replace(mod, h('option', { value: '' }, '(none)'), (MODIFIERS[t] || []).map((m) => h('option', { value: m }, ':' + m)));
      replace(pre, h('option', { value: '' }, '(none)'), PREFIXES.map((p) => h('option', { value: p }, p)));
      preField.hidden = !PREFIXED.has(t);
    };
    param.addEventListener('change', sync);
    if (name && params.has(name)) param.value = name;
    sync();
    if (modifier) mod.value = modifier;
    if (prefix) pre.value = prefix;
    val.value = value || '';
    row.read = () => {
      if (!val.value.trim() && mod.value !== 'missing') return null;
      const key = param.value + (mod.value ? ':' + mod.value : '');
      const t = (params.get(param.value) || {}).type;
      return [key, (PREFIXED.has(t) && pre.value ? pre.value : '') + val.value.trim()];
    };
    append(list, row);
    return val;
  };
  const kept = [];
  for (const [k, v] of ctx.query) {
    if (RESULT_PARAMS.has(k)) { if (k !== '_cursor' && k !== '_count' && k !== '_sort') kept.push([k, v]); continue; }
    const [name, modifier] = k.split(':');
    const t = (params.get(name) || {}).type;
    const pm = PREFIXED.has(t) ? /^(eq|ne|gt|lt|ge|le|sa|eb|ap)(.*)$/.exec(v) : null;
    addCriterion(name, modifier, pm ? pm[1] : '', pm ? pm[2] : v);
  }
  if (!list.children.length) addCriterion(defaultParam(type, params), '', '', '');

  const count = h('select', { id: 'count' }, ['10', '20', '50', '100'].map((n) => h('option', { value: n }, n)));
  count.value = ctx.query.get('_count') || '20';
  const sort = h('select', { id: 'sort' }, h('option', { value: '' }, '(server order)'),
    h('option', { value: '-_lastUpdated' }, 'last updated, newest first'), h('option', { value: '_lastUpdated' }, 'last updated, oldest first'),
    names.filter((p) => params.get(p).type === 'date' && !p.startsWith('_')).flatMap((p) => [
      h('option', { value: '-' + p }, p + ', newest first'), h('option', { value: p }, p + ', oldest first')]));
  sort.value = ctx.query.get('_sort') || '';

  const form = h('form', { id: 'search-form', 'aria-label': 'Search ' + type },
    list,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => addCriterion('', '', '', '').focus() }, 'Add criterion')),
    h('div', { class: 'searchopts' },
      h('div', { class: 'field' }, h('label', { for: 'count' }, 'Results per page'), count),
      h('div', { class: 'field' }, h('label', { for: 'sort' }, 'Sort'), sort),
      h('button', { type: 'submit', class: 'primary', id: 'search-submit' }, 'Search')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = [];
    for (const row of list.children) {
      const kv = row.read && row.read();
      if (kv) q.push(kv);
    }
    q.push(...kept, ['_count', count.value]);
    if (sort.value) q.push(['_sort', sort.value]);
    const route = routeWithQuery('/resources/' + type, q);
    if ('#' + route === location.hash) runSearch(ctx, type, results);
    else location.hash = route;
  });
  const results = section('Results', 2, { id: 'results', 'aria-live': 'polite' });
  append(ctx.view, form, results);
  await runSearch(ctx, type, results);
}

function defaultParam(type, params) {
  for (const p of ['name', 'family', 'code', 'patient', 'identifier', '_id']) if (params.has(p)) return p;
  return '_id';
}

async function runSearch(ctx, type, el) {
  const heading = el.firstChild;
  replace(el, heading);
  const q = new URLSearchParams(ctx.query);
  if (!q.has('_count')) q.set('_count', '20');
  let b;
  try {
    b = await ctx.api.fhir(type + '?' + q.toString());
  } catch (e) {
    append(el, message(messageKind(e), describe(e, 'Search ' + type)));
    return;
  }
  const outcomes = [];
  const rows = [];
  for (const e of (b && b.entry) || []) {
    if (!e.resource) continue;
    if (e.search && e.search.mode === 'outcome') outcomes.push(e.resource);
    else rows.push(e);
  }
  for (const o of outcomes) {
    for (const i of o.issue || []) append(el, message(i.severity === 'error' ? 'error' : 'info', i.diagnostics || i.code));
  }
  const total = typeof b.total === 'number' ? b.total : null;
  append(el, h('p', { id: 'result-count' }, total != null ? total.toLocaleString('en') + ' found' : rows.length + ' on this page'));
  if (rows.length) {
    append(el, h('table', { id: 'result-table' },
      h('caption', null, type + ' results'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Resource'), h('th', { scope: 'col' }, 'Summary'), h('th', { scope: 'col' }, 'Last updated'))),
      h('tbody', null, rows.map((e) => {
        const r = e.resource;
        const label = r.resourceType + '/' + r.id;
        return h('tr', { dataset: { id: r.id } },
          h('td', null, link('/resource/' + r.resourceType + '/' + r.id, label),
            r.resourceType === 'Patient' ? [' ', link('/patient/' + r.id, h('span', { class: 'chart-link' }, 'chart'), h('span', { class: 'visually-hidden' }, ' of ' + label))] : null,
            e.search && e.search.mode === 'include' ? h('span', { class: 'badge' }, 'included') : null),
          h('td', null, summary(r)),
          h('td', null, date(r.meta && r.meta.lastUpdated)));
      }))));
  }
  const pager = h('nav', { class: 'pager', 'aria-label': 'Result pages' });
  for (const [rel, text] of [['previous', 'Previous page'], ['next', 'Next page']]) {
    const lq = linkQuery(b, rel) || (rel === 'previous' ? linkQuery(b, 'prev') : '');
    if (lq) append(pager, h('a', { href: '#/resources/' + type + '?' + lq, rel: rel === 'previous' ? 'prev' : 'next' }, text));
  }
  if (pager.children.length) append(el, pager);
}
