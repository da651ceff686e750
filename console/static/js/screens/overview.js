// Overview: the server (metadata, readiness), counts of the common
// resource types and the latest audit events, each as far as the grant
// allows.
import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { h, append, replace, section, message, link } from '../dom.js';
import { describe, messageKind, ApiError } from '../api.js';
import { codingText, date } from '../format.js';

export const COMMON_TYPES = ['Patient', 'Encounter', 'Observation', 'Condition', 'MedicationRequest',
  'AllergyIntolerance', 'Procedure', 'Immunization', 'DiagnosticReport', 'ImagingStudy', 'Practitioner',
  'Organization'];

export async function overview(ctx) {
  ctx.heading('Overview');
  const server = section('Server');
  const activity = section('Activity in the last hour');
  const counts = section('Resources');
  const audit = section('Recent audit events');
  append(ctx.view, server, activity, counts, audit);
  await Promise.all([serverInfo(ctx, server), serverActivity(ctx, activity), typeCounts(ctx, counts), auditEvents(ctx, audit)]);
}

// serverActivity shows $stats: database size, queue depths, and requests
// and their p95 latency a minute at a time over the last hour. $stats is
// for admins (and monitoring tokens); others see why it is missing.
async function serverActivity(ctx, el) {
  const who = ctx.session.who;
  if (!ctx.session.authOff && (!who || who.role !== 'admin')) {
    append(el, message('denied', 'Server activity is for administrators.'));
    return;
  }
  let p;
  try {
    p = await ctx.api.fhir('$stats');
  } catch (e) {
    append(el, message(messageKind(e), messageKind(e) === 'denied' ? 'Server activity is for administrators.' : describe(e, 'Server activity')));
    return;
  }
  const params = (p && p.parameter) || [];
  const part = (prm, name) => (prm.part || []).find((x) => x.name === name) || {};
  const dl = h('dl', { class: 'cards', id: 'activity-cards' });
  const size = params.find((x) => x.name === 'databaseSize');
  if (size) append(dl, h('div', { class: 'card' }, h('dt', null, 'Database size'), h('dd', { id: 'db-size' }, bytes(size.valueDecimal))));
  const queueNames = { exportsAccepted: 'Exports waiting', exportsRunning: 'Exports running', inferenceQueue: 'Inference jobs queued',
    subscriptionBacklog: 'Changes to match (subscriptions)', auditBacklog: 'Audit backlog' };
  for (const q of params.filter((x) => x.name === 'queue')) {
    const name = part(q, 'name').valueCode;
    append(dl, h('div', { class: 'card' }, h('dt', null, queueNames[name] || name),
      h('dd', { dataset: { queue: name } }, String(part(q, 'depth').valueDecimal))));
  }
  append(el, dl);
  const minutes = params.filter((x) => x.name === 'minute').map((m) => ({
    t: Date.parse(part(m, 'start').valueInstant) / 1000,
    requests: part(m, 'requests').valueInteger || 0,
    errors: part(m, 'errors').valueInteger || 0,
    p95: part(m, 'p95Ms').valueDecimal || 0,
  }));
  if (!minutes.length) {
    append(el, message('info', 'No requests in the last hour.'));
    return;
  }
  const total = minutes.reduce((n, m) => n + m.requests, 0);
  const caption = total.toLocaleString('en') + ' requests in ' + minutes.length + ' active minute' + (minutes.length === 1 ? '' : 's') +
    ', ' + minutes.reduce((n, m) => n + m.errors, 0) + ' server errors';
  const plotEl = h('div', { class: 'chart-plot', role: 'img', 'aria-label': 'Requests a minute and their 95th percentile latency: ' + caption });
  const figure = h('figure', { id: 'activity', dataset: { minutes: String(minutes.length) } }, h('figcaption', null, caption), plotEl,
    h('details', null, h('summary', null, 'Data table'), h('table', { id: 'activity-table' },
      h('caption', null, 'Requests a minute'),
      h('thead', null, h('tr', null, ['Minute', 'Requests', 'Server errors', 'p95 (ms)'].map((c, i) => h('th', { scope: 'col', class: i ? 'num' : null }, c)))),
      h('tbody', null, minutes.map((m) => h('tr', null,
        h('td', null, new Date(m.t * 1000).toISOString().slice(11, 16) + ' UTC'),
        h('td', { class: 'num' }, String(m.requests)), h('td', { class: 'num' }, String(m.errors)), h('td', { class: 'num' }, String(m.p95))))))));
  append(el, figure);
  new uPlot({
    width: Math.max(320, Math.min(1100, (figure.clientWidth || 800) - 8)),
    height: 220,
    scales: { x: { time: true }, ms: {} },
    axes: [{}, { label: 'requests/min' }, { side: 1, scale: 'ms', label: 'p95 ms', grid: { show: false } }],
    series: [{}, { label: 'requests', stroke: '#0b5394', width: 2 }, { label: 'p95 ms', scale: 'ms', stroke: '#9c2f17', width: 2 }],
  }, [minutes.map((m) => m.t), minutes.map((m) => m.requests), minutes.map((m) => m.p95)], plotEl);
}

function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + units[i];
}

async function serverInfo(ctx, el) {
  const dl = h('dl', { class: 'cards' });
  append(el, dl);
  const card = (term, value, id) => append(dl, h('div', { class: 'card' }, h('dt', null, term), h('dd', { id }, value)));
  const [meta, ready] = await Promise.allSettled([ctx.metadata(), ctx.api.text('readyz')]);
  if (meta.status === 'fulfilled') {
    const m = meta.value;
    card('Software', ((m.software && m.software.name) || 'FHIR server') + ' ' + ((m.software && m.software.version) || ''), 'software');
    card('FHIR version', m.fhirVersion || '?', 'fhir-version');
    card('Resource types', String(((m.rest && m.rest[0] && m.rest[0].resource) || []).length), 'type-count');
  } else {
    card('Metadata', describe(meta.reason), 'software');
  }
  if (ready.status === 'fulfilled') {
    card('Health', 'Ready', 'health');
  } else {
    card('Health', 'Not ready: ' + (ready.reason instanceof ApiError ? ready.reason.message : String(ready.reason)), 'health');
  }
}

async function typeCounts(ctx, el) {
  const tbody = h('tbody');
  append(el, h('table', { id: 'counts' },
    h('caption', null, 'Resources you may search, by type'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col', class: 'num' }, 'Count'))),
    tbody));
  await Promise.all(COMMON_TYPES.map(async (type) => {
    const cell = h('td', { class: 'num', dataset: { type } }, '…');
    append(tbody, h('tr', null, h('th', { scope: 'row' }, link('/resources/' + type, type)), cell));
    if (!ctx.session.can(type, 's')) {
      replace(cell, h('span', { class: 'denied' }, 'not permitted'));
      return;
    }
    try {
      const n = await ctx.api.count(type);
      replace(cell, n == null ? '?' : n.toLocaleString('en'));
    } catch (e) {
      replace(cell, h('span', { class: messageKind(e) === 'denied' ? 'denied' : 'muted' }, describe(e)));
    }
  }));
}

async function auditEvents(ctx, el) {
  if (!ctx.session.can('AuditEvent', 's')) {
    append(el, message('denied', 'Your access does not include the audit trail.'));
    return;
  }
  let b;
  try {
    b = await ctx.api.fhir('AuditEvent?_sort=-date&_count=10');
  } catch (e) {
    append(el, message(messageKind(e), describe(e, 'Audit events')));
    return;
  }
  const events = ((b && b.entry) || []).map((e) => e.resource).filter((r) => r && r.resourceType === 'AuditEvent');
  if (!events.length) {
    append(el, message('info', 'No audit events yet.'));
    return;
  }
  append(el, h('table', { id: 'audit' },
    h('caption', null, 'The ten latest AuditEvents'),
    h('thead', null, h('tr', null, ['Recorded', 'Type', 'Action', 'Outcome', 'Agent', 'Entities'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, events.map((r) => h('tr', null,
      h('td', null, link('/resource/AuditEvent/' + r.id, date(r.recorded))),
      h('td', null, [codingText(r.type), ...(r.subtype || []).map(codingText)].filter(Boolean).join(' / ')),
      h('td', null, r.action || ''),
      h('td', null, outcome(r.outcome)),
      h('td', null, agent(r)),
      h('td', { class: 'num' }, String((r.entity || []).length)))))));
}

function outcome(code) {
  return { 0: 'success', 4: 'minor failure', 8: 'serious failure', 12: 'major failure' }[code] || code || '';
}

function agent(r) {
  const a = (r.agent || []).find((x) => x.requestor) || (r.agent || [])[0];
  if (!a) return '';
  const who = a.who || {};
  return who.display || (who.identifier && who.identifier.value) || who.reference || a.altId || a.name || '';
}
