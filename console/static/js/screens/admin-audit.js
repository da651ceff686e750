// Admin › Audit log: an AuditEvent search with filters (date range, agent,
// patient, entity type, outcome, subtype), newest first, paged by the
// Bundle's links, each row opening to the event's JSON. The filters live
// in the route's query, so a page of results can be reloaded and shared.
import { h, append, replace, section, message, routeWithQuery } from '../dom.js';
import { linkQuery } from '../api.js';
import { codingText, date } from '../format.js';
import { Form } from './admin-common.js';

const ROUTE = '/admin/audit';
const OUTCOMES = [['', 'any'], ['0', 'success'], ['4', 'minor failure (refused)'], ['8', 'serious failure (server fault)'], ['12', 'major failure']];
const ENTITY_TYPES = [['', 'any'], ['1', 'person'], ['2', 'system object'], ['3', 'organization'], ['4', 'other']];
// Subtypes Ember records (README, Audit trail), offered as suggestions.
const SUBTYPES = ['read', 'vread', 'search-type', 'search-system', 'history-instance', 'create', 'update', 'patch', 'delete',
  'transaction', 'batch', 'operation', 'login', 'logout', 'token', 'token-refused', 'launch', 'client add', 'client remove',
  'client list', 'user add', 'user remove', 'user list', 'user password', 'user unlock', 'user role', 'import', 'STOW-RS',
  'WADO-RS', 'QIDO-RS', 'C-STORE', 'C-FIND', 'association'];
const REF = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/;
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

export async function auditLog(ctx) {
  if (!ctx.session.can('AuditEvent', 's')) {
    append(ctx.view, message('denied', 'Your access does not include the audit trail (AuditEvent search).'));
    return;
  }
  const form = filterForm(ctx);
  const filters = section('Filters', 2, { id: 'audit-filters' });
  const results = section('Events', 2, { id: 'audit-results', 'aria-live': 'polite' });
  append(filters, form.el);
  append(ctx.view, filters, results);
  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    form.clear();
    const { params, errors } = read(form);
    if (errors.length) {
      form.show(errors);
      return;
    }
    const route = routeWithQuery(ROUTE, [...params, ['_sort', '-date'], ['_count', form.fields.get('_count').control.value]]);
    if ('#' + route === location.hash) run(ctx, form, results, new URLSearchParams(route.slice(ROUTE.length + 1)));
    else location.hash = route;
  });
  fill(form, ctx.query);
  await run(ctx, form, results, ctx.query);
}

function filterForm(ctx) {
  const form = new Form('audit-form', 'Audit log filters');
  const select = (opts) => h('select', null, opts.map(([v, t]) => h('option', { value: v }, t)));
  append(form.el,
    h('datalist', { id: 'audit-subtypes' }, SUBTYPES.map((s) => h('option', { value: s }))),
    h('div', { class: 'form-grid' },
      form.add('date', 'From (day)', h('input', { type: 'date' })),
      form.add('date-to', 'To (day, inclusive)', h('input', { type: 'date' })),
      form.add('agent', 'Agent', h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' }),
        'A login (ada) or a reference (Practitioner/7).'),
      form.add('patient', 'Patient', h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' }), 'Patient/ID or ID.'),
      form.add('entity-type', 'Entity type', select(ENTITY_TYPES)),
      form.add('outcome', 'Outcome', select(OUTCOMES)),
      form.add('subtype', 'Subtype', h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', list: 'audit-subtypes' }),
        'read, search-type, login, user add, …'),
      form.add('_count', 'Per page', select([['20', '20'], ['50', '50'], ['100', '100']]))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'audit-submit' }, 'Search'),
      h('a', { href: '#' + ROUTE, class: 'button' }, 'Clear filters')),
    form.status);
  return form;
}

// read turns the filters into AuditEvent search parameters, checking them.
function read(form) {
  const v = (name) => form.fields.get(name).control.value.trim();
  const params = [];
  const errors = [];
  const from = v('date');
  const to = v('date-to');
  if (from && !DAY.test(from)) errors.push({ field: 'date', text: 'Want a day (YYYY-MM-DD).' });
  if (to && !DAY.test(to)) errors.push({ field: 'date-to', text: 'Want a day (YYYY-MM-DD).' });
  if (from && to && from > to) errors.push({ field: 'date-to', text: 'Before the "from" day.' });
  if (from) params.push(['date', 'ge' + from]);
  if (to) params.push(['date', 'le' + to]);
  const agent = v('agent');
  if (agent) params.push(REF.test(agent) ? ['agent', agent] : ['altid', agent]);
  const patient = v('patient');
  if (patient) {
    const ref = ID.test(patient) ? 'Patient/' + patient : patient;
    if (!/^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(ref)) errors.push({ field: 'patient', text: 'Want Patient/ID or an id.' });
    else params.push(['patient', ref]);
  }
  for (const name of ['entity-type', 'outcome', 'subtype']) if (v(name)) params.push([name, v(name)]);
  return { params, errors };
}

// fill sets the filters from the route's query (a reload, a page link).
function fill(form, q) {
  const set = (name, value) => { form.fields.get(name).control.value = value; };
  for (const d of q.getAll('date')) {
    const m = /^(ge|gt|le|lt|eq)?(\d{4}-\d{2}-\d{2})/.exec(d);
    if (m) set(m[1] === 'le' || m[1] === 'lt' ? 'date-to' : 'date', m[2]);
  }
  if (q.get('agent') || q.get('altid')) set('agent', q.get('agent') || q.get('altid'));
  if (q.get('patient')) set('patient', q.get('patient'));
  for (const name of ['entity-type', 'outcome', 'subtype']) if (q.get(name)) set(name, q.get(name));
  if (['20', '50', '100'].includes(q.get('_count'))) set('_count', q.get('_count'));
}

async function run(ctx, form, el, query) {
  replace(el, el.firstChild);
  const q = new URLSearchParams(query);
  if (!q.has('_sort')) q.set('_sort', '-date');
  if (!q.has('_count')) q.set('_count', '20');
  let b;
  try {
    b = await ctx.api.fhir('AuditEvent?' + q.toString());
  } catch (e) {
    form.refused(e);
    append(el, message('error', 'No results: see the filters above.'));
    return;
  }
  const events = ((b && b.entry) || []).map((e) => e.resource).filter((r) => r && r.resourceType === 'AuditEvent');
  append(el, h('p', { id: 'audit-count' }, typeof b.total === 'number' ? b.total.toLocaleString('en') + ' events' : events.length + ' events on this page'));
  if (events.length) {
    append(el, h('table', { id: 'audit-log', class: 'admin-table' },
      h('caption', null, 'Audit events, newest first'),
      h('thead', null, h('tr', null, ['Recorded', 'Type / subtype', 'Action', 'Outcome', 'Agent', 'Entities', 'JSON']
        .map((t) => h('th', { scope: 'col' }, t)))),
      events.map((r) => eventRows(r))));
  }
  const pager = h('nav', { class: 'pager', 'aria-label': 'Audit event pages' });
  for (const [rel, text] of [['previous', 'Newer events'], ['next', 'Older events']]) {
    const lq = linkQuery(b, rel) || (rel === 'previous' ? linkQuery(b, 'prev') : '');
    if (lq) append(pager, h('a', { href: '#' + ROUTE + '?' + lq, rel: rel === 'previous' ? 'prev' : 'next' }, text));
  }
  if (pager.children.length) append(el, pager);
}

// eventRows is one event's row and the hidden row of its JSON, in a tbody
// of their own.
function eventRows(r) {
  const jsonId = 'audit-json-' + r.id;
  const toggle = h('button', { type: 'button', class: 'toggle-json', 'aria-expanded': 'false', 'aria-controls': jsonId },
    'Show', h('span', { class: 'visually-hidden' }, ' JSON of AuditEvent ' + r.id));
  const detail = h('tr', { class: 'audit-json', id: jsonId, hidden: true },
    h('td', { colspan: '7' }, h('pre', { class: 'json', tabindex: '0', 'aria-label': 'JSON of AuditEvent ' + r.id }, JSON.stringify(r, null, 2))));
  toggle.addEventListener('click', () => {
    const open = detail.hidden;
    detail.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    toggle.firstChild.textContent = open ? 'Hide' : 'Show';
  });
  return h('tbody', { dataset: { id: r.id } },
    h('tr', { class: 'audit-row' },
      h('td', null, date(r.recorded), r.period ? h('span', { class: 'muted' }, ' (' + date(r.period.start) + ' – ' + date(r.period.end) + ')') : null),
      h('td', { class: 'subtype' }, [codingText(r.type), ...(r.subtype || []).map(codingText)].filter(Boolean).join(' / ')),
      h('td', null, r.action || ''),
      h('td', null, outcome(r.outcome), r.outcomeDesc ? h('span', { class: 'muted' }, ' ' + r.outcomeDesc) : null),
      h('td', { class: 'agent' }, agent(r)),
      h('td', { class: 'num' }, String((r.entity || []).length)),
      h('td', null, toggle)),
    detail);
}

function outcome(code) {
  return (OUTCOMES.find(([v]) => v === String(code)) || [code, String(code || '')])[1];
}

function agent(r) {
  const a = (r.agent || []).find((x) => x.requestor) || (r.agent || [])[0];
  if (!a) return '';
  const who = a.who || {};
  const name = who.reference || who.display || (who.identifier && who.identifier.value) || a.name || '';
  return [a.altId, name && name !== a.altId ? name : ''].filter(Boolean).join(' · ');
}
