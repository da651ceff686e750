// DICOMweb for the Imaging screens: QIDO-RS searches answered in DICOM
// JSON, and WADO-RS rendered images fetched with the bearer token (an
// <img src> cannot send one) into blob: URLs, which the CSP's img-src allows.
import { h } from '../dom.js';
import { ApiError, describe } from '../api.js';

// Tags the screens read, as DICOM JSON keys.
export const TAG = {
  StudyDate: '00080020',
  StudyTime: '00080030',
  AccessionNumber: '00080050',
  ModalitiesInStudy: '00080061',
  ReferringPhysicianName: '00080090',
  StudyDescription: '00081030',
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  StudyInstanceUID: '0020000D',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  Modality: '00080060',
  SeriesDescription: '0008103E',
  BodyPartExamined: '00180015',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  NumberOfSeriesRelatedInstances: '00201209',
  SOPInstanceUID: '00080018',
  InstanceNumber: '00200013',
  NumberOfFrames: '00280008',
};

// Window presets (centre, width in the image's rescaled units: Hounsfield
// units for CT); "default" sends no window, so the server applies the
// instance's own VOI window.
export const PRESETS = [
  { id: 'default', label: 'Default', window: null },
  { id: 'soft-tissue', label: 'Soft tissue', window: [40, 400] },
  { id: 'lung', label: 'Lung', window: [-600, 1500] },
  { id: 'bone', label: 'Bone', window: [300, 1500] },
  { id: 'brain', label: 'Brain', window: [40, 80] },
];

export function values(ds, tag) {
  const a = ds && ds[tag];
  return a && Array.isArray(a.Value) ? a.Value : [];
}

export function text(ds, tag) {
  const v = values(ds, tag)[0];
  return v == null ? '' : String(v);
}

export function int(ds, tag) {
  const n = Number(values(ds, tag)[0]);
  return Number.isFinite(n) ? n : null;
}

// personName shows a DICOM PN ("Family^Given^Middle^Prefix^Suffix") as
// "Family, Given Middle".
export function personName(ds, tag) {
  const v = values(ds, tag)[0];
  const s = v && typeof v === 'object' ? v.Alphabetic || v.Ideographic || v.Phonetic || '' : String(v || '');
  const [family, given, middle, prefix, suffix] = s.split('^');
  const rest = [prefix, given, middle, suffix].filter(Boolean).join(' ');
  return [family, rest].filter(Boolean).join(', ');
}

// da shows a DICOM DA (YYYYMMDD) as YYYY-MM-DD.
export function da(s) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(s || '');
  return m ? m[1] + '-' + m[2] + '-' + m[3] : s || '';
}

export function dicomwebURL(api, path) {
  return api.root + 'dicomweb/' + path.replace(/^\/+/, '');
}

// qido runs a QIDO-RS search; no match is [].
export async function qido(api, path, params) {
  const q = new URLSearchParams(params || {}).toString();
  const res = await api.request(dicomwebURL(api, path) + (q ? '?' + q : ''), { headers: { Accept: 'application/dicom+json' } });
  const body = await res.text();
  const out = body ? JSON.parse(body) : [];
  return Array.isArray(out) ? out : [];
}

// instances lists a series' instances as images to scroll: one per frame,
// ordered by InstanceNumber (then UID, for a stable order without one).
export async function seriesImages(api, study, series) {
  const ds = await qido(api, 'studies/' + encodeURIComponent(study) + '/series/' + encodeURIComponent(series) + '/instances', { limit: '10000' });
  const insts = ds.map((d) => ({ uid: text(d, TAG.SOPInstanceUID), number: int(d, TAG.InstanceNumber), frames: Math.max(1, int(d, TAG.NumberOfFrames) || 1) }))
    .filter((i) => i.uid)
    .sort((a, b) => ((a.number ?? Infinity) - (b.number ?? Infinity)) || (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  const images = [];
  for (const i of insts) {
    for (let f = 1; f <= i.frames; f++) images.push({ instance: i.uid, number: i.number, frame: f, frames: i.frames });
  }
  return { instances: insts, images };
}

// middle is the instance a series is represented by: its central slice.
export function middle(list) {
  return list.length ? list[Math.floor((list.length - 1) / 2)] : null;
}

// renderedURL is an instance's (or one frame's) WADO-RS rendered image.
export function renderedURL(api, study, series, image, window) {
  let path = 'studies/' + encodeURIComponent(study) + '/series/' + encodeURIComponent(series) +
    '/instances/' + encodeURIComponent(image.instance);
  if (image.frames > 1) path += '/frames/' + image.frame;
  path += '/rendered';
  return dicomwebURL(api, path) + (window ? '?window=' + encodeURIComponent(window[0] + ',' + window[1]) : '');
}

// ObjectURLs fetches images with the token into blob: URLs and keeps the
// newest max of them, revoking the rest; revokeAll when the screen goes.
export class ObjectURLs {
  constructor(api, max = 64) {
    this.api = api;
    this.max = max;
    this.cache = new Map(); // url → Promise<blob: URL>
    window.addEventListener('hashchange', () => this.revokeAll(), { once: true });
  }

  get(url, accept = 'image/jpeg') {
    const hit = this.cache.get(url);
    if (hit) {
      this.cache.delete(url);
      this.cache.set(url, hit);
      return hit;
    }
    const p = this.api.request(url, { headers: { Accept: accept } })
      .then((res) => res.blob())
      .then((b) => URL.createObjectURL(b));
    p.catch(() => this.cache.delete(url));
    this.cache.set(url, p);
    while (this.cache.size > this.max) {
      const [oldest, op] = this.cache.entries().next().value;
      this.cache.delete(oldest);
      op.then((u) => URL.revokeObjectURL(u), () => {});
    }
    return p;
  }

  revokeAll() {
    for (const p of this.cache.values()) p.then((u) => URL.revokeObjectURL(u), () => {});
    this.cache.clear();
  }
}

// show puts a blob: URL into img and resolves once it is decoded; the
// img's data-state says where it is (loading, loaded, failed), for tests
// and styles.
export async function show(img, url) {
  img.src = url;
  try {
    await img.decode();
    img.dataset.state = 'loaded';
  } catch (e) {
    img.dataset.state = 'failed';
    throw new Error('the image could not be decoded');
  }
}

// thumbnail is a small rendered image of one instance, loading in the
// background; a failure shows why in its place.
export function thumbnail(urls, url, alt) {
  const img = h('img', { class: 'thumb-img', alt, width: '96', height: '96', dataset: { state: 'loading' } });
  const box = h('span', { class: 'thumb' }, img);
  urls.get(url).then((u) => show(img, u)).catch((e) => {
    img.remove();
    box.classList.add('thumb-none');
    box.dataset.state = 'failed';
    box.append(imageProblem(e));
  });
  return box;
}

// imageProblem says briefly why an image is not shown.
export function imageProblem(e) {
  if (e instanceof ApiError) {
    if (e.kind === 'missing') return 'No image on this server';
    if (e.kind === 'denied') return 'Image not permitted';
    if (e.status === 406) return 'Image cannot be rendered';
  }
  return describe(e, 'Image');
}

// canReadImages reports whether the grant reaches DICOMweb, which needs a
// user/ or system/ ImagingStudy read scope (no patient/ scope does).
export function canReadImages(session) {
  if (session.authOff) return true;
  return session.scopes.some((s) => s.context !== 'patient' && (s.type === '*' || s.type === 'ImagingStudy') &&
    (s.perms.includes('r') || s.perms.includes('s')));
}

// studyUID is an ImagingStudy's DICOM Study Instance UID, from its
// urn:oid: identifier (urn:dicom:uid first, as Ember writes it).
export function studyUID(is) {
  const ids = (is && is.identifier) || [];
  const pick = ids.find((i) => i.system === 'urn:dicom:uid' && /^urn:oid:/.test(i.value || '')) ||
    ids.find((i) => /^urn:oid:[0-9.]+$/.test(i.value || ''));
  return pick ? pick.value.slice('urn:oid:'.length) : null;
}
