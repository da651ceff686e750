// The patient chart: demographics, a timeline of encounters, conditions,
// medication requests and dispenses, allergies; vital signs and laboratory results over time (uPlot), one
// plotted point per Observation of the chosen code, and imaging studies.
import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { h, append, replace, section, message, link } from '../dom.js';
import { describe, messageKind } from '../api.js';
import { humanName, concept, codingText, date, quantity } from '../format.js';
import { imagingSection } from './imaging-chart.js';

// Preferred vital signs, in order: body weight, heart rate, then the rest.
const PREFERRED = ['29463-7', '8867-4', '8302-2', '85354-9', '39156-5', '9279-1', '8310-5', '59408-5'];

export async function chart(ctx) {
  const id = ctx.args[0];
  ctx.heading('Patient ' + id);
  let p;
  try {
    p = await ctx.api.fhir('Patient/' + encodeURIComponent(id));
  } catch (e) {
    append(ctx.view, message(messageKind(e), describe(e, 'Patient/' + id)));
    return;
  }
  const name = humanName(p.name) || 'Patient ' + id;
  ctx.retitle(name);
  const demo = section('Demographics', 2, { id: 'demographics' });
  append(demo, demographics(p), h('p', null, link('/resource/Patient/' + id, 'Patient/' + id + ' as a resource')));
  const timelineEl = section('Timeline', 2, { id: 'timeline' });
  const vitalsEl = section('Vital signs and laboratory results', 2, { id: 'vitals' });
  const imagingEl = section('Imaging', 2, { id: 'imaging' });
  append(ctx.view, demo, timelineEl, vitalsEl, imagingEl);
  await Promise.all([timeline(ctx, id, timelineEl), vitals(ctx, id, vitalsEl), imagingSection(ctx, id, imagingEl)]);
}

function demographics(p) {
  const rows = [];
  const add = (term, value) => { if (value) rows.push(h('dt', null, term), h('dd', null, value)); };
  add('Name', humanName(p.name));
  add('Gender', p.gender);
  add('Born', p.birthDate);
  if (p.deceasedDateTime || p.deceasedBoolean) add('Deceased', p.deceasedDateTime ? date(p.deceasedDateTime) : 'yes');
  add('Marital status', concept(p.maritalStatus));
  add('Language', concept(((p.communication || [])[0] || {}).language));
  const a = (p.address || [])[0];
  if (a) add('Address', [(a.line || []).join(', '), a.city, a.state, a.postalCode, a.country].filter(Boolean).join(', '));
  const phone = (p.telecom || []).find((t) => t.system === 'phone');
  add('Phone', phone && phone.value);
  const mrn = (p.identifier || []).find((i) => ((i.type && i.type.coding) || []).some((c) => c.code === 'MR'));
  add('Medical record number', mrn && mrn.value);
  return h('dl', { class: 'demographics' }, rows);
}

const KINDS = [
  { type: 'Encounter', label: 'Encounter', plural: 'Encounters', query: { _sort: '-date' },
    when: (r) => r.period && r.period.start, text: (r) => concept((r.type || [])[0]) || (r.class && (r.class.display || r.class.code)) || 'Encounter' },
  { type: 'Condition', label: 'Condition', plural: 'Conditions', query: {},
    when: (r) => r.onsetDateTime || (r.onsetPeriod && r.onsetPeriod.start) || r.recordedDate,
    text: (r) => concept(r.code) + (r.abatementDateTime ? ' (resolved ' + date(r.abatementDateTime) + ')' : '') },
  { type: 'MedicationRequest', label: 'Medication', plural: 'Medications', query: { _sort: '-authoredon' },
    when: (r) => r.authoredOn,
    text: (r) => (concept(r.medicationCodeableConcept) || (r.medicationReference && r.medicationReference.display) || 'Medication') + (r.status ? ' — ' + r.status : '') },
  { type: 'MedicationDispense', label: 'Dispense', plural: 'Dispenses', query: {},
    when: (r) => r.whenHandedOver || r.whenPrepared,
    text: (r) => (concept(r.medicationCodeableConcept) || (r.medicationReference && r.medicationReference.display) || 'Medication') + ' dispensed' + (r.status ? ' — ' + r.status : '') },
  { type: 'AllergyIntolerance', label: 'Allergy', plural: 'Allergies', query: {},
    when: (r) => r.recordedDate || r.onsetDateTime, text: (r) => concept(r.code) + (r.criticality ? ' (' + r.criticality + ' criticality)' : '') },
];

async function timeline(ctx, id, el) {
  const notes = h('ul', { class: 'muted', id: 'timeline-notes' });
  const items = [];
  await Promise.all(KINDS.map(async (k) => {
    try {
      const rs = await ctx.api.searchAll(k.type, Object.assign({ patient: id, _count: '100' }, k.query), 500);
      for (const r of rs) items.push({ kind: k, r, when: k.when(r) || '' });
      append(notes, h('li', null, k.plural + ': ' + rs.length));
    } catch (e) {
      append(notes, h('li', { class: messageKind(e) === 'denied' ? 'denied' : null }, describe(e, k.plural)));
    }
  }));
  items.sort((a, b) => (b.when > a.when) - (b.when < a.when));
  const list = h('ol', { class: 'timeline', id: 'timeline-list', 'aria-label': 'Events, newest first' },
    items.map((it) => h('li', { class: 'kind-' + it.kind.type, dataset: { kind: it.kind.type } },
      h('time', { datetime: it.when || null }, date(it.when) || 'undated'),
      h('span', { class: 'badge' }, it.kind.label),
      link('/resource/' + it.kind.type + '/' + it.r.id, it.kind.text(it.r) || it.kind.type))));
  const filters = h('fieldset', { class: 'timeline-filter' }, h('legend', { class: 'visually-hidden' }, 'Show in the timeline'),
    KINDS.map((k) => {
      const box = h('input', { type: 'checkbox', id: 'show-' + k.type, checked: true });
      box.addEventListener('change', () => {
        for (const li of list.querySelectorAll('li[data-kind="' + k.type + '"]')) li.hidden = !box.checked;
      });
      return h('label', { for: 'show-' + k.type }, box, ' ' + k.plural);
    }));
  append(el, notes, filters, items.length ? list : h('p', { class: 'muted' }, 'Nothing to show.'));
}

// codeKey is an Observation's code as system|code (LOINC first).
function codeOf(r) {
  const cs = (r.code && r.code.coding) || [];
  const c = cs.find((x) => x.system === 'http://loinc.org') || cs[0];
  if (!c) return null;
  return { key: (c.system || '') + '|' + c.code, code: c.code, label: c.display || concept(r.code) || c.code };
}

// isVital reports an Observation of the vital-signs category.
function isVital(r) {
  return (r.category || []).some((c) => ((c.coding || []).some((x) => x.code === 'vital-signs')));
}

function timeOf(r) {
  const t = r.effectiveDateTime || r.effectiveInstant || (r.effectivePeriod && r.effectivePeriod.start) || r.issued;
  const ms = t ? Date.parse(t) : NaN;
  return Number.isNaN(ms) ? null : ms / 1000;
}

async function vitals(ctx, id, el) {
  let obs;
  try {
    obs = await ctx.api.searchAll('Observation', { patient: id, category: 'vital-signs,laboratory', _count: '1000' }, 20000);
  } catch (e) {
    append(el, message(messageKind(e), describe(e, 'Vital signs')));
    return;
  }
  const groups = new Map();
  for (const r of obs) {
    const c = codeOf(r);
    if (!c) continue;
    if (!groups.has(c.key)) groups.set(c.key, { ...c, lab: !isVital(r), obs: [] });
    groups.get(c.key).obs.push(r);
  }
  if (!groups.size) {
    append(el, h('p', { class: 'muted' }, 'No vital signs or laboratory results recorded.'));
    return;
  }
  const ordered = [...groups.values()].sort((a, b) => {
    const pa = PREFERRED.indexOf(a.code);
    const pb = PREFERRED.indexOf(b.code);
    return ((pa < 0 ? 99 : pa) - (pb < 0 ? 99 : pb)) || (b.obs.length - a.obs.length);
  });
  const option = (g) => h('option', { value: g.key }, g.label + ' (' + g.obs.length + ')');
  const group = (label, gs) => (gs.length ? h('optgroup', { label }, gs.map(option)) : null);
  const select = h('select', { id: 'vital-code' },
    group('Vital signs', ordered.filter((g) => !g.lab)), group('Laboratory', ordered.filter((g) => g.lab)));
  const figure = h('figure', { class: 'chart', id: 'vitals-chart' });
  append(el, h('div', { class: 'field' }, h('label', { for: 'vital-code' }, 'Measurement'), select), figure);
  let plot = null;
  const draw = () => {
    if (plot) plot.destroy();
    plot = drawChart(ctx, figure, groups.get(select.value));
  };
  select.addEventListener('change', draw);
  draw();
}

// drawChart plots one code's Observations: x their times, one series per
// value (valueQuantity, or each component's code), one point per
// Observation.
function drawChart(ctx, figure, g) {
  const rows = g.obs.map((r) => ({ r, t: timeOf(r) })).filter((x) => x.t != null).sort((a, b) => a.t - b.t);
  const series = [];
  if (rows.some((x) => x.r.valueQuantity)) series.push({ key: 'value', label: g.label, unit: unitOf(rows.map((x) => x.r.valueQuantity)), get: (r) => r.valueQuantity });
  const comps = new Map();
  for (const { r } of rows) {
    for (const c of r.component || []) {
      const cc = ((c.code && c.code.coding) || [])[0];
      if (cc && c.valueQuantity && !comps.has(cc.code)) comps.set(cc.code, codingText(cc) || cc.code);
    }
  }
  for (const [code, label] of comps) {
    series.push({ key: code, label, unit: '', get: (r) => ((r.component || []).find((c) => ((c.code && c.code.coding) || []).some((x) => x.code === code)) || {}).valueQuantity });
  }
  for (const s of series) if (!s.unit) s.unit = unitOf(rows.map((x) => s.get(x.r)));
  const xs = rows.map((x) => x.t);
  const data = [xs, ...series.map((s) => rows.map((x) => { const q = s.get(x.r); return q && q.value != null ? Number(q.value) : null; }))];
  const unplotted = g.obs.length - rows.length;
  const caption = g.label + ' over time' + (series.length === 1 && series[0].unit ? ' (' + series[0].unit + ')' : '') + ': ' +
    rows.length + ' measurement' + (rows.length === 1 ? '' : 's') + (unplotted ? ', ' + unplotted + ' without a time not plotted' : '');
  const plotEl = h('div', { class: 'chart-plot', role: 'img', 'aria-label': caption });
  const table = h('table', { id: 'vitals-table' },
    h('caption', null, g.label),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'When'), series.map((s) => h('th', { scope: 'col', class: 'num' }, s.label + (s.unit ? ' (' + s.unit + ')' : ''))))),
    h('tbody', null, rows.map((x) => h('tr', null,
      h('td', null, link('/resource/Observation/' + x.r.id, date(new Date(x.t * 1000).toISOString()))),
      series.map((s) => h('td', { class: 'num' }, quantity(s.get(x.r)) || '—'))))));
  replace(figure, h('figcaption', { id: 'vitals-caption' }, caption), plotEl,
    h('details', null, h('summary', null, 'Data table'), table));
  const colours = ['#9c2f17', '#0b5394', '#1e6b34', '#6a3d9a'];
  const width = () => Math.max(320, Math.min(1100, (figure.clientWidth || 800) - 8));
  const plot = new uPlot({
    width: width(),
    height: 300,
    legend: { show: false },
    scales: { x: { time: true } },
    axes: [{}, { label: series.length === 1 ? series[0].unit : '' }],
    series: [{}, ...series.map((s, k) => ({
      label: s.label,
      stroke: colours[k % colours.length],
      width: 2,
      points: { show: true, size: 8, fill: colours[k % colours.length] },
      spanGaps: true,
    }))],
  }, data, plotEl);
  // What the chart holds, for tests and tools: one x per Observation.
  figure.dataset.code = g.code;
  figure.dataset.points = String(plot.data[0].length);
  const onResize = () => {
    if (!ctx.current() || !figure.isConnected) { window.removeEventListener('resize', onResize); return; }
    plot.setSize({ width: width(), height: 300 });
  };
  window.addEventListener('resize', onResize);
  const destroy = plot.destroy.bind(plot);
  plot.destroy = () => { window.removeEventListener('resize', onResize); destroy(); };
  return plot;
}

function unitOf(qs) {
  const q = qs.find((x) => x && (x.unit || x.code));
  return q ? q.unit || q.code : '';
}
