// The patient chart's Imaging section: the patient's ImagingStudies, newest
// first, each with a thumbnail of its central image, the status of its AI
// findings and a link to the study viewer.
import { h, append, message, link } from '../dom.js';
import { describe, messageKind } from '../api.js';
import { concept, date } from '../format.js';
import { ObjectURLs, thumbnail, renderedURL, middle, canReadImages, studyUID } from './imaging-dicom.js';
import { studyReports, reportsSummary } from './imaging-findings.js';

// Thumbnails fetched per chart at most: a long imaging history lists the
// rest without one.
const MAX_THUMBNAILS = 12;

export async function imagingSection(ctx, patientId, el) {
  let list;
  try {
    list = await ctx.api.searchAll('ImagingStudy', { patient: patientId, _count: '50' }, 200);
  } catch (e) {
    append(el, message(messageKind(e), describe(e, 'Imaging studies')));
    return;
  }
  if (!list.length) {
    append(el, h('p', { class: 'muted', id: 'chart-imaging-none' }, 'No imaging studies.'));
    return;
  }
  list.sort((a, b) => ((b.started || '') > (a.started || '')) - ((b.started || '') < (a.started || '')));
  let reports = new Map();
  let reportsProblem = null;
  try {
    reports = await studyReports(ctx.api, patientId);
  } catch (e) {
    reportsProblem = e;
  }
  const images = canReadImages(ctx.session);
  const urls = images ? new ObjectURLs(ctx.api) : null;
  append(el, h('ul', { class: 'chart-imaging', id: 'chart-imaging' }, list.map((s, k) => {
    const uid = studyUID(s);
    const modalities = [...new Set([...(s.modality || []), ...(s.series || []).map((x) => x.modality)].filter(Boolean).map((c) => c.code))].join(', ');
    const what = s.description || concept((s.procedureCode || [])[0]) || (modalities ? modalities + ' study' : 'Imaging study');
    const ai = reportsProblem ? h('span', { class: messageKind(reportsProblem) === 'denied' ? 'denied' : 'muted' }, describe(reportsProblem, 'AI findings'))
      : h('span', { class: 'ai-status' }, reportsSummary(reports.get(s.id)));
    return h('li', { class: 'study-card', dataset: { study: uid || '', imagingStudy: s.id } },
      studyThumb(ctx, urls, s, uid, what, images && k < MAX_THUMBNAILS),
      h('div', { class: 'study-card-text' },
        uid ? link('/imaging/' + encodeURIComponent(uid), what) : link('/resource/ImagingStudy/' + s.id, what),
        h('span', { class: 'muted' }, [date(s.started), modalities,
          s.numberOfSeries != null ? s.numberOfSeries + ' series' : null,
          s.numberOfInstances != null ? s.numberOfInstances + ' images' : null].filter(Boolean).join(' · ')),
        h('span', null, 'AI findings: ', ai)));
  })));
}

// studyThumb renders the middle instance of the study's largest series.
function studyThumb(ctx, urls, s, uid, what, fetch) {
  const series = [...(s.series || [])].filter((x) => x.uid && (x.instance || []).length)
    .sort((a, b) => b.instance.length - a.instance.length)[0];
  if (!urls) return h('span', { class: 'thumb thumb-none' }, 'Images need staff access');
  if (!uid || !series) return h('span', { class: 'thumb thumb-none' }, 'No image');
  if (!fetch) return h('span', { class: 'thumb thumb-none' }, 'See the study');
  const insts = [...series.instance].filter((i) => i.uid).sort((a, b) => (a.number ?? Infinity) - (b.number ?? Infinity));
  const mid = middle(insts);
  const alt = 'Thumbnail of ' + what + (s.started ? ' on ' + date(s.started) : '') + ': ' +
    ((series.modality && series.modality.code) || '') + ' series ' + (series.number ?? '') + ', middle image';
  return thumbnail(urls, renderedURL(ctx.api, uid, series.uid, { instance: mid.uid, frame: 1, frames: 1 }, null), alt);
}
