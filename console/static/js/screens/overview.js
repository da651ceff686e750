// Overview: the server (metadata, readiness), counts of the common
// resource types and the latest audit events, each as far as the grant
// allows.
import { h, append, replace, section, message, link } from '../dom.js';
import { describe, messageKind, ApiError } from '../api.js';
import { codingText, date } from '../format.js';

export const COMMON_TYPES = ['Patient', 'Encounter', 'Observation', 'Condition', 'MedicationRequest',
  'AllergyIntolerance', 'Procedure', 'Immunization', 'DiagnosticReport', 'ImagingStudy', 'Practitioner',
  'Organization'];

export async function overview(ctx) {
  ctx.heading('Overview');
  const server = section('Server');
  const counts = section('Resources');
  const audit = section('Recent audit events');
  append(ctx.view, server, counts, audit);
  await Promise.all([serverInfo(ctx, server), typeCounts(ctx, counts), auditEvents(ctx, audit)]);
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
