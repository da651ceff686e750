// Imaging: the studies Ember holds (QIDO-RS, filtered and paged) and a
// study's viewer: its series with thumbnails, the selected series'
// images with window presets, and its AI findings with "Run model".
import { h, append, replace, section, message, link, routeWithQuery } from '../dom.js';
import { describe, messageKind } from '../api.js';
import { TAG, qido, values, text, int, personName, da, seriesImages, middle, renderedURL, thumbnail, ObjectURLs, studyUID } from './imaging-dicom.js';
import { seriesViewer, seriesLabel } from './imaging-viewer.js';
import { findingsPanel } from './imaging-findings.js';

const PAGE = 25;

// The filters, as the route's query keeps them (dates as YYYY-MM-DD).
const FILTERS = [
  { key: 'PatientName', label: 'Patient name', hint: 'Starts with; * and ? are wildcards' },
  { key: 'PatientID', label: 'Patient ID' },
  { key: 'from', label: 'Study date from', type: 'date' },
  { key: 'to', label: 'Study date to', type: 'date' },
  { key: 'ModalitiesInStudy', label: 'Modality', list: ['CT', 'MR', 'CR', 'DX', 'US', 'XA', 'MG', 'NM', 'PT', 'OT'] },
  { key: 'AccessionNumber', label: 'Accession number' },
];

// qidoParams turns the route's query into QIDO-RS matching.
function qidoParams(query) {
  const q = {};
  const name = (query.get('PatientName') || '').trim();
  if (name) q.PatientName = /[*?]/.test(name) ? name : name + '*';
  for (const k of ['PatientID', 'AccessionNumber']) {
    const v = (query.get(k) || '').trim();
    if (v) q[k] = v;
  }
  const mod = (query.get('ModalitiesInStudy') || '').trim().toUpperCase();
  if (mod) q.ModalitiesInStudy = mod;
  const day = (k) => (query.get(k) || '').replace(/-/g, '');
  if (day('from') || day('to')) q.StudyDate = day('from') + '-' + day('to');
  return q;
}

export async function studies(ctx) {
  ctx.heading('Imaging');
  const offset = Math.max(0, parseInt(ctx.query.get('offset') || '0', 10) || 0);
  append(ctx.view, filterForm(ctx));
  const results = h('div', { id: 'study-results' });
  append(ctx.view, results);
  let found;
  try {
    found = await qido(ctx.api, 'studies', Object.assign(qidoParams(ctx.query), { limit: String(PAGE + 1), offset: String(offset) }));
  } catch (e) {
    append(results, message(messageKind(e), describe(e, 'Studies')));
    return;
  }
  const more = found.length > PAGE;
  const rows = found.slice(0, PAGE);
  if (!rows.length) {
    append(results, h('p', { class: 'msg msg-info', id: 'study-count' }, offset ? 'No more studies.' : 'No study matches.'));
  } else {
    append(results,
      h('p', { id: 'study-count' }, 'Studies ' + (offset + 1) + '–' + (offset + rows.length) + (more ? ' (more on the next page)' : '')),
      studyTable(rows));
  }
  append(results, pager(ctx, offset, more));
}

function filterForm(ctx) {
  const inputs = FILTERS.map((f) => {
    const id = 'filter-' + f.key;
    const input = h('input', { id, name: f.key, type: f.type || 'text', autocomplete: 'off', value: ctx.query.get(f.key) || '',
      list: f.list ? id + '-list' : null, 'aria-describedby': f.hint ? id + '-hint' : null });
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), input,
      f.hint ? h('span', { class: 'hint muted', id: id + '-hint' }, f.hint) : null,
      f.list ? h('datalist', { id: id + '-list' }, f.list.map((m) => h('option', { value: m }))) : null);
  });
  const form = h('form', { class: 'study-filters', id: 'study-filters', role: 'search', 'aria-label': 'Find studies' },
    inputs,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'study-search' }, 'Search'),
      link('/imaging', 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const params = [];
    for (const f of FILTERS) {
      const v = form.elements[f.key].value.trim();
      if (v) params.push([f.key, v]);
    }
    location.hash = '#' + routeWithQuery('/imaging', params);
  });
  return form;
}

function studyTable(rows) {
  return h('table', { id: 'study-table' },
    h('caption', { class: 'visually-hidden' }, 'Studies, newest first as the server orders them'),
    h('thead', null, h('tr', null, ['Study', 'Patient', 'Patient ID', 'Date', 'Modalities', 'Accession', 'Series', 'Images']
      .map((t) => h('th', { scope: 'col', class: t === 'Series' || t === 'Images' ? 'num' : null }, t)))),
    h('tbody', null, rows.map((ds) => {
      const uid = text(ds, TAG.StudyInstanceUID);
      return h('tr', { dataset: { study: uid } },
        h('td', null, link('/imaging/' + encodeURIComponent(uid), text(ds, TAG.StudyDescription) || 'Study ' + uid)),
        h('td', null, personName(ds, TAG.PatientName)),
        h('td', null, text(ds, TAG.PatientID)),
        h('td', null, da(text(ds, TAG.StudyDate))),
        h('td', null, [...new Set(values(ds, TAG.ModalitiesInStudy))].join(', ')),
        h('td', null, text(ds, TAG.AccessionNumber)),
        h('td', { class: 'num' }, text(ds, TAG.NumberOfStudyRelatedSeries)),
        h('td', { class: 'num' }, text(ds, TAG.NumberOfStudyRelatedInstances)));
    })));
}

function pager(ctx, offset, more) {
  const at = (o) => {
    const q = new URLSearchParams(ctx.query);
    if (o > 0) q.set('offset', String(o));
    else q.delete('offset');
    return '#' + routeWithQuery('/imaging', q);
  };
  const nav = h('nav', { class: 'pager', 'aria-label': 'Pages of studies' });
  if (offset > 0) append(nav, h('a', { href: at(Math.max(0, offset - PAGE)), rel: 'prev' }, '← Previous'));
  if (more) append(nav, h('a', { href: at(offset + PAGE), rel: 'next' }, 'Next →'));
  return nav;
}

// studyViewer is #/imaging/STUDY_UID.
export async function studyViewer(ctx) {
  const uid = ctx.args[0];
  ctx.heading('Study ' + uid);
  const urls = new ObjectURLs(ctx.api);
  const [found, record] = await Promise.allSettled([
    qido(ctx.api, 'studies', { StudyInstanceUID: uid }),
    ctx.api.fhir('ImagingStudy?identifier=' + encodeURIComponent('urn:oid:' + uid) + '&_count=5'),
  ]);
  if (found.status === 'rejected') {
    append(ctx.view, message(messageKind(found.reason), describe(found.reason, 'Study ' + uid)));
    return;
  }
  const ds = found.value[0];
  if (!ds) {
    append(ctx.view, message('missing', 'Study ' + uid + ': not found'));
    return;
  }
  const study = record.status === 'fulfilled'
    ? ((record.value && record.value.entry) || []).map((e) => e.resource).find((r) => r && r.resourceType === 'ImagingStudy' && studyUID(r) === uid)
    : null;
  const title = [text(ds, TAG.StudyDescription) || 'Study', personName(ds, TAG.PatientName), da(text(ds, TAG.StudyDate))].filter(Boolean).join(' — ');
  ctx.retitle(title);
  const seriesEl = section('Series', 2, { id: 'series', class: 'imaging-series' });
  const viewerEl = section('Viewer', 2, { id: 'viewer', class: 'imaging-viewer' });
  const findingsEl = section('AI findings', 2, { id: 'findings', class: 'imaging-findings' });
  append(ctx.view,
    studyFacts(ds, study, record),
    h('div', { class: 'imaging-layout' }, seriesEl, viewerEl, findingsEl));
  const findingsDone = study
    ? findingsPanel(ctx, study, findingsEl)
    : Promise.resolve(append(findingsEl, record.status === 'rejected'
      ? message(messageKind(record.reason), describe(record.reason, 'AI findings'))
      : message('info', 'No ImagingStudy records this study yet, so it has no findings.')));
  await Promise.all([seriesList(ctx, urls, uid, seriesEl, viewerEl), findingsDone]);
}

function studyFacts(ds, study, record) {
  const rows = [];
  const add = (term, value) => { if (value) rows.push(h('dt', null, term), h('dd', null, value)); };
  const patientRef = study && study.subject && /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(study.subject.reference || '');
  const pname = personName(ds, TAG.PatientName);
  add('Patient', patientRef ? link('/patient/' + patientRef[1], pname || study.subject.reference) : pname);
  add('Patient ID', text(ds, TAG.PatientID));
  add('Date', [da(text(ds, TAG.StudyDate)), text(ds, TAG.StudyTime).replace(/^(\d\d)(\d\d).*/, '$1:$2')].filter(Boolean).join(' '));
  add('Modalities', values(ds, TAG.ModalitiesInStudy).join(', '));
  add('Accession', text(ds, TAG.AccessionNumber));
  add('Referring physician', personName(ds, TAG.ReferringPhysicianName));
  add('Series / images', text(ds, TAG.NumberOfStudyRelatedSeries) + ' / ' + text(ds, TAG.NumberOfStudyRelatedInstances));
  add('Study UID', h('code', null, text(ds, TAG.StudyInstanceUID)));
  if (study) add('FHIR', link('/resource/ImagingStudy/' + study.id, 'ImagingStudy/' + study.id));
  else if (record.status === 'rejected') add('FHIR', h('span', { class: 'denied' }, describe(record.reason, 'ImagingStudy')));
  return h('dl', { class: 'demographics study-facts', id: 'study-facts' }, rows);
}

// seriesList lists the study's series, each with a thumbnail of its middle
// image, and shows the first in the viewer.
async function seriesList(ctx, urls, uid, el, viewerEl) {
  let found;
  try {
    found = await qido(ctx.api, 'studies/' + encodeURIComponent(uid) + '/series', { limit: '1000' });
  } catch (e) {
    append(el, message(messageKind(e), describe(e, 'Series')));
    return;
  }
  const series = found.map((d) => ({ study: uid, uid: text(d, TAG.SeriesInstanceUID), number: int(d, TAG.SeriesNumber),
    modality: text(d, TAG.Modality), description: text(d, TAG.SeriesDescription), bodyPart: text(d, TAG.BodyPartExamined),
    count: int(d, TAG.NumberOfSeriesRelatedInstances), images: [] }))
    .sort((a, b) => (a.number ?? Infinity) - (b.number ?? Infinity));
  if (!series.length) {
    append(el, message('missing', 'This study has no series stored here.'));
    return;
  }
  const list = h('ul', { class: 'series-list', id: 'series-list' });
  append(el, list);
  const viewerBody = h('div', { id: 'viewer-body' });
  const viewerTitle = h('p', { id: 'viewer-series', class: 'viewer-series' });
  append(viewerEl, viewerTitle, viewerBody);
  const buttons = [];
  const select = (s) => {
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.series === s.uid));
    viewerTitle.textContent = seriesLabel(s);
    replace(viewerBody, s.problem ? message(messageKind(s.problem), describe(s.problem, 'Images')) : seriesViewer(ctx, urls, s));
  };
  await Promise.all(series.map(async (s) => {
    try {
      s.images = (await seriesImages(ctx.api, uid, s.uid)).images;
    } catch (e) {
      s.problem = e;
    }
  }));
  for (const s of series) {
    const mid = middle(s.images);
    const instances = new Set(s.images.map((i) => i.instance)).size;
    const alt = 'Thumbnail of ' + (s.modality || '') + ' series ' + (s.number ?? '') + (s.description ? ' (' + s.description + ')' : '') +
      (mid ? ': middle image, ' + (s.images.indexOf(mid) + 1) + ' of ' + s.images.length : '');
    const b = h('button', { type: 'button', class: 'series-item', 'aria-pressed': 'false', dataset: { series: s.uid } },
      mid ? thumbnail(urls, renderedURL(ctx.api, uid, s.uid, mid, null), alt) : h('span', { class: 'thumb thumb-none' }, 'No images'),
      h('span', { class: 'series-text' }, seriesLabel(Object.assign({}, s, { count: s.images.length || s.count })),
        s.bodyPart ? h('span', { class: 'muted' }, ' · ' + s.bodyPart) : null,
        instances && instances !== s.images.length ? h('span', { class: 'muted' }, ' · ' + instances + ' instances') : null));
    b.addEventListener('click', () => select(s));
    buttons.push(b);
    append(list, h('li', null, b));
  }
  select(series.find((s) => s.images.length) || series[0]);
}
