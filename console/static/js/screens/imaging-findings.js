// A study's AI findings (the DiagnosticReports whose imagingStudy is it,
// their Observations and the model Devices that made them), its model runs
// (Tasks), and "Run model": $infer, then the Task polled until it is done.
import { h, append, replace, message, link } from '../dom.js';
import { describe, messageKind } from '../api.js';
import { concept, codingText, date, value, refId } from '../format.js';

export const RADIOLOGY = 'http://loinc.org|LP29684-5';
const AI_DEVICE_TYPE = 'http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS|Artificial-Intelligence';
const MODEL_SYSTEM = 'urn:ember:model';
const DONE = new Set(['completed', 'failed', 'cancelled', 'rejected', 'entered-in-error']);
// How long a run is watched: jobs take milliseconds to seconds, a queue
// behind other studies longer.
const POLL_MS = 700;
const WATCH_MS = 180000;

// studyReports groups a patient's radiology reports by the ImagingStudy
// (its id) they report on.
export async function studyReports(api, patientId) {
  const rs = await api.searchAll('DiagnosticReport', { patient: patientId, category: RADIOLOGY, _count: '200' }, 2000);
  const by = new Map();
  for (const r of rs) {
    for (const ref of r.imagingStudy || []) {
      const id = refId(ref, 'ImagingStudy');
      if (!id) continue;
      if (!by.has(id)) by.set(id, []);
      by.get(id).push(r);
    }
  }
  return by;
}

// reportStatus sums up a study's reports: "2 reports: preliminary".
export function reportsSummary(reports) {
  if (!reports || !reports.length) return 'No AI findings';
  const statuses = [...new Set(reports.map((r) => r.status || 'unknown'))].join(', ');
  return reports.length + (reports.length === 1 ? ' report' : ' reports') + ': ' + statuses;
}

// inferenceOn: the CapabilityStatement lists $infer only with models loaded.
async function inferenceOn(ctx) {
  const m = await ctx.metadata();
  const rest = (m.rest || []).find((r) => r.mode === 'server') || (m.rest || [])[0] || {};
  const is = (rest.resource || []).find((r) => r.type === 'ImagingStudy') || {};
  return [...(is.operation || []), ...(rest.operation || [])].some((o) => o.name === 'infer');
}

function entries(bundle, type) {
  return ((bundle && bundle.entry) || []).map((e) => e.resource).filter((r) => r && r.resourceType === type);
}

// modelOf names a Device: "demo 1.0.0".
function deviceLabel(d) {
  const name = ((d.deviceName || [])[0] || {}).name || '';
  const version = ((d.version || [])[0] || {}).value || '';
  return { name, version, label: [name, version].filter(Boolean).join(' ') || 'Device/' + d.id };
}

// reportModel is the model behind a report: its Observations' Device, else
// the performer's urn:ember:model identifier (name|version).
function reportModel(r, observations, devices) {
  for (const ref of r.result || []) {
    const o = observations.get(refId(ref, 'Observation'));
    const d = o && devices.get(refId(o.device, 'Device'));
    if (d) return deviceLabel(d);
  }
  for (const p of r.performer || []) {
    const id = p.identifier || {};
    if (id.system === MODEL_SYSTEM && id.value) {
      const [name, version] = id.value.split('|');
      return { name, version: version || '', label: [name, version].filter(Boolean).join(' ') };
    }
  }
  const p = (r.performer || [])[0];
  return { name: '', version: '', label: (p && (p.display || p.reference)) || 'Unknown performer' };
}

// findingsPanel fills el with the findings of the ImagingStudy study and
// the Run model controls.
export async function findingsPanel(ctx, study, el) {
  const list = h('div', { id: 'findings-list', 'aria-live': 'polite' });
  const runs = h('div', { id: 'model-runs' });
  const devices = new Map();
  const load = async () => {
    await Promise.all([loadFindings(ctx, study, devices, list), loadRuns(ctx, study, runs)]);
  };
  try {
    const b = await ctx.api.fhir('Device?type=' + encodeURIComponent(AI_DEVICE_TYPE) + '&_count=100');
    for (const d of entries(b, 'Device')) devices.set(d.id, d);
  } catch (e) {
    // Without Devices the reports still name their model (performer).
  }
  append(el, await runControls(ctx, study, devices, load), list, h('h3', null, 'Model runs'), runs);
  await load();
}

async function loadFindings(ctx, study, devices, el) {
  const patient = refId(study.subject, 'Patient');
  let reports = [];
  const observations = new Map();
  try {
    const by = patient ? await studyReports(ctx.api, patient) : new Map();
    reports = by.get(study.id) || [];
  } catch (e) {
    replace(el, message(messageKind(e), describe(e, 'AI findings')));
    return;
  }
  let obsProblem = null;
  if (reports.length) {
    try {
      const os = await ctx.api.searchAll('Observation', { 'derived-from': 'ImagingStudy/' + study.id, _count: '200' }, 2000);
      for (const o of os) observations.set(o.id, o);
    } catch (e) {
      obsProblem = describe(e, 'Findings');
    }
  }
  reports.sort((a, b) => ((b.issued || '') > (a.issued || '')) - ((b.issued || '') < (a.issued || '')));
  replace(el,
    h('p', { id: 'findings-summary' }, reportsSummary(reports)),
    reports.map((r) => reportCard(r, observations, devices, obsProblem)));
}

let cardSeq = 0;

function reportCard(r, observations, devices, obsProblem) {
  const model = reportModel(r, observations, devices);
  const id = 'finding-' + (++cardSeq);
  const obs = (r.result || []).map((ref) => ({ ref, o: observations.get(refId(ref, 'Observation')) }));
  return h('article', { class: 'finding', 'aria-labelledby': id, dataset: { report: r.id, model: model.name, status: r.status || '' } },
    h('h3', { id }, concept(r.code) || 'Report', h('span', { class: 'finding-model' }, ' by model ', h('strong', null, model.label))),
    h('p', { class: 'finding-meta' },
      h('span', { class: 'badge status-' + (r.status || 'unknown') }, r.status || 'unknown'),
      r.issued ? h('time', { datetime: r.issued }, date(r.issued)) : null, ' ',
      link('/resource/DiagnosticReport/' + r.id, 'DiagnosticReport/' + r.id)),
    r.conclusion ? h('p', { class: 'finding-conclusion' }, r.conclusion) : null,
    obs.length ? h('ul', { class: 'finding-observations' }, obs.map(({ ref, o }) => observationItem(ref, o))) : null,
    obsProblem ? h('p', { class: 'denied' }, obsProblem) : null,
    (r.meta && (r.meta.security || []).some((s) => s.code === 'AIAST')) || obs.some(({ o }) => o && ((o.meta && o.meta.security) || []).some((s) => s.code === 'AIAST'))
      ? h('p', { class: 'muted' }, 'Asserted by an AI model; not reviewed by a clinician unless its status says so.') : null);
}

function observationItem(ref, o) {
  const id = refId(ref, 'Observation');
  if (!o) return h('li', null, link('/resource/Observation/' + id, ref.display || 'Observation/' + id));
  const interp = (o.interpretation || []).map(concept).filter(Boolean).join(', ');
  return h('li', { dataset: { observation: o.id } },
    link('/resource/Observation/' + o.id, concept(o.code) || 'Observation'), ': ',
    h('span', { class: 'finding-value' }, value(o) || '—'),
    interp ? h('span', { class: 'finding-interp' }, ' (' + interp + ')') : null);
}

async function loadRuns(ctx, study, el) {
  let tasks;
  try {
    tasks = await ctx.api.searchAll('Task', { focus: 'ImagingStudy/' + study.id, _count: '100' }, 200);
  } catch (e) {
    replace(el, message(messageKind(e), describe(e, 'Model runs')));
    return;
  }
  if (!tasks.length) {
    replace(el, h('p', { class: 'muted' }, 'No model has run on this study.'));
    return;
  }
  tasks.sort((a, b) => ((b.authoredOn || '') > (a.authoredOn || '')) - ((b.authoredOn || '') < (a.authoredOn || '')));
  replace(el, h('table', { id: 'runs-table' },
    h('caption', { class: 'visually-hidden' }, 'Model runs on this study, newest first'),
    h('thead', null, h('tr', null, ['Model', 'Status', 'Requested', 'Task'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, tasks.map((t) => h('tr', { dataset: { task: t.id, status: t.status } },
      h('td', null, taskModel(t)),
      h('td', null, taskStatus(t)),
      h('td', null, date(t.authoredOn)),
      h('td', null, link('/resource/Task/' + t.id, 'Task/' + t.id)))))));
}

function taskModel(t) {
  const input = (t.input || []).find((i) => i.valueString);
  return input ? input.valueString.replace('|', ' ') : (t.owner && t.owner.display) || '';
}

function taskStatus(t) {
  const why = t.statusReason ? concept(t.statusReason) || codingText(((t.statusReason.coding) || [])[0]) : '';
  return (t.status || '') + (why ? ' (' + why + ')' : '');
}

// runControls: the model to run (every model that applies, or one of the
// Devices), whether to run again what already ran, and the button.
async function runControls(ctx, study, devices, reload) {
  const box = h('div', { class: 'run-model', id: 'run-model-box' });
  let on = false;
  try {
    on = await inferenceOn(ctx);
  } catch (e) {
    on = false;
  }
  if (!on) {
    append(box, h('p', { class: 'muted', id: 'run-off' }, 'Inference is off on this server (no models loaded), so no model can be run.'));
    return box;
  }
  const names = new Map();
  for (const d of devices.values()) {
    const m = deviceLabel(d);
    if (m.name && (!names.has(m.name) || names.get(m.name) < m.version)) names.set(m.name, m.version);
  }
  const select = h('select', { id: 'run-model-name' }, h('option', { value: '' }, 'Every model that applies'),
    [...names].sort().map(([n, v]) => h('option', { value: n }, n + (v ? ' ' + v : ''))));
  const force = h('input', { type: 'checkbox', id: 'run-force', checked: true });
  const status = h('p', { id: 'run-status', role: 'status', dataset: { state: 'idle' } });
  const tasks = h('ul', { id: 'run-tasks', class: 'run-tasks' });
  const allowed = ctx.session.can('Task', 'c');
  const button = h('button', { type: 'button', id: 'run-model', class: 'primary', disabled: !allowed }, 'Run model');
  button.addEventListener('click', () => {
    button.disabled = true;
    run(ctx, study, { model: select.value, force: force.checked }, status, tasks)
      .then(() => reload())
      .catch((e) => { setStatus(status, 'failed', describe(e, 'Run model')); })
      .finally(() => { button.disabled = false; });
  });
  append(box,
    h('div', { class: 'actions' },
      h('div', { class: 'field' }, h('label', { for: 'run-model-name' }, 'Model'), select),
      h('label', { for: 'run-force', class: 'inline' }, force, ' Run again if it already ran'),
      button),
    allowed ? null : h('p', { class: 'denied' }, 'Running a model needs permission to create Tasks.'),
    status, tasks);
  return box;
}

function setStatus(el, state, text) {
  el.dataset.state = state;
  el.textContent = text;
}

// run asks $infer and watches each Task it answers with until it is done.
async function run(ctx, study, { model, force }, status, list) {
  const params = [];
  if (model) params.push({ name: 'model', valueString: model });
  if (force) params.push({ name: 'force', valueBoolean: true });
  setStatus(status, 'running', 'Asking the server to run ' + (model || 'every model that applies') + '…');
  replace(list);
  const answer = await ctx.api.fhir('ImagingStudy/' + encodeURIComponent(study.id) + '/$infer', {
    method: 'POST', body: JSON.stringify({ resourceType: 'Parameters', parameter: params }),
  });
  const tasks = entries(answer, 'Task');
  if (!tasks.length) {
    setStatus(status, 'done', answer ? 'No model applies to this study.' : 'Queued; your access does not show its Tasks.');
    return;
  }
  setStatus(status, 'running', tasks.length + (tasks.length === 1 ? ' run' : ' runs') + ' queued…');
  const rows = tasks.map((t) => {
    const li = h('li', { dataset: { task: t.id, status: t.status } });
    append(list, li);
    return { t, li };
  });
  const show = ({ t, li }) => {
    li.dataset.status = t.status;
    replace(li, h('progress', { 'aria-label': taskModel(t) || 'Model run', max: DONE.has(t.status) ? '1' : null, value: DONE.has(t.status) ? '1' : null }),
      ' ', h('strong', null, taskModel(t) || 'Model'), ': ', taskStatus(t), ' ', link('/resource/Task/' + t.id, 'Task/' + t.id));
  };
  rows.forEach(show);
  const until = Date.now() + WATCH_MS;
  await Promise.all(rows.map(async (row) => {
    while (!DONE.has(row.t.status)) {
      if (Date.now() > until || !ctx.current()) return;
      await new Promise((r) => setTimeout(r, POLL_MS));
      row.t = await ctx.api.fhir('Task/' + encodeURIComponent(row.t.id));
      show(row);
    }
  }));
  const counts = {};
  for (const { t } of rows) counts[t.status] = (counts[t.status] || 0) + 1;
  const summary = Object.entries(counts).map(([s, n]) => n + ' ' + s).join(', ');
  const finished = rows.every(({ t }) => DONE.has(t.status));
  setStatus(status, finished ? (counts.completed === rows.length ? 'completed' : 'failed') : 'waiting',
    (finished ? 'Done: ' : 'Still running after ' + WATCH_MS / 60000 + ' minutes: ') + summary + '.');
}
