// The image viewer of one series: its images (one per instance, or per
// frame of a multi-frame instance) scrolled with buttons, a slider, the
// arrow keys or the mouse wheel, and a window (preset or typed) applied
// through WADO-RS /rendered's window=centre,width.
import { h, replace } from '../dom.js';
import { PRESETS, renderedURL, show, imageProblem } from './imaging-dicom.js';

// A wheel notch is about 100 pixels; a trackpad sends many small deltas.
const WHEEL_STEP = 50;

// seriesViewer returns the viewer's element. s: {study, uid, number,
// modality, description, images}; urls: an ObjectURLs.
export function seriesViewer(ctx, urls, s) {
  const n = s.images.length;
  const state = { index: Math.floor((n - 1) / 2), preset: PRESETS[0], custom: null, seq: 0, wheel: 0 };
  const img = h('img', { id: 'viewer-image', alt: '', dataset: { state: 'loading' } });
  const problem = h('p', { id: 'viewer-problem', class: 'msg msg-error', hidden: true });
  const caption = h('figcaption', { id: 'viewer-caption' });
  const figure = h('figure', { class: 'viewer-frame', id: 'viewer-figure', tabindex: '0', 'aria-describedby': 'viewer-help' }, img, caption);
  const prev = h('button', { type: 'button', id: 'frame-prev' }, '◀ Previous');
  const next = h('button', { type: 'button', id: 'frame-next' }, 'Next ▶');
  const slider = h('input', { type: 'range', id: 'frame-slider', min: '1', max: String(Math.max(n, 1)), step: '1', value: String(state.index + 1), disabled: n < 2 });
  const pos = h('output', { id: 'frame-pos', for: 'frame-slider' });
  const presetButtons = PRESETS.map((p) => h('button', { type: 'button', class: 'preset', dataset: { preset: p.id }, 'aria-pressed': 'false' },
    p.label, p.window ? h('span', { class: 'preset-values' }, ' ' + p.window[0] + '/' + p.window[1]) : null));
  const center = h('input', { type: 'number', id: 'window-center', step: 'any', inputmode: 'decimal' });
  const width = h('input', { type: 'number', id: 'window-width', step: 'any', min: '1', inputmode: 'decimal' });
  const customForm = h('form', { class: 'window-custom', id: 'window-custom' },
    h('div', { class: 'field' }, h('label', { for: 'window-center' }, 'Centre'), center),
    h('div', { class: 'field' }, h('label', { for: 'window-width' }, 'Width'), width),
    h('button', { type: 'submit' }, 'Apply window'));

  const windowOf = () => (state.custom ? state.custom : state.preset.window);
  const windowLabel = () => {
    const w = windowOf();
    if (state.custom) return 'custom window ' + w[0] + '/' + w[1];
    return w ? state.preset.label.toLowerCase() + ' window ' + w[0] + '/' + w[1] : 'the image\'s own window';
  };
  const describeImage = (im, k) => [
    (s.modality || 'Image') + ' series ' + (s.number ?? '') + (s.description ? ' (' + s.description + ')' : ''),
    'image ' + (k + 1) + ' of ' + n + (im.frames > 1 ? ' (frame ' + im.frame + ' of ' + im.frames + ')' : ''),
    windowLabel(),
  ].join(', ');

  const urlOf = (k) => renderedURL(ctx.api, s.study, s.uid, s.images[k], windowOf());
  const prefetch = (k) => {
    if (k >= 0 && k < n) urls.get(urlOf(k), 'image/png').catch(() => {});
  };
  // draw shows image state.index in the current window; a newer draw
  // started meanwhile wins, so fast scrolling never shows a stale image.
  const draw = async () => {
    const seq = ++state.seq;
    const k = state.index;
    const im = s.images[k];
    prev.disabled = k <= 0;
    next.disabled = k >= n - 1;
    slider.value = String(k + 1);
    slider.setAttribute('aria-valuetext', 'Image ' + (k + 1) + ' of ' + n);
    pos.textContent = (k + 1) + ' / ' + n;
    for (const b of presetButtons) b.setAttribute('aria-pressed', String(!state.custom && b.dataset.preset === state.preset.id));
    caption.textContent = describeImage(im, k) + (im.number != null ? ' — instance number ' + im.number : '');
    img.dataset.state = 'loading';
    figure.setAttribute('aria-busy', 'true');
    try {
      const u = await urls.get(urlOf(k), 'image/png');
      if (seq !== state.seq) return;
      await show(img, u);
      if (seq !== state.seq) return;
      img.alt = describeImage(im, k);
      img.dataset.index = String(k);
      img.dataset.instance = im.instance;
      img.dataset.frame = String(im.frame);
      img.dataset.window = (windowOf() || []).join(',');
      problem.hidden = true;
    } catch (e) {
      if (seq !== state.seq) return;
      img.dataset.state = 'failed';
      img.alt = 'Not shown: ' + describeImage(im, k);
      problem.textContent = imageProblem(e);
      problem.hidden = false;
    } finally {
      if (seq === state.seq) figure.removeAttribute('aria-busy');
    }
    prefetch(k + 1);
    prefetch(k - 1);
  };
  const go = (k) => {
    const to = Math.min(n - 1, Math.max(0, k));
    if (to === state.index && img.dataset.state !== 'failed') return;
    state.index = to;
    draw();
  };

  prev.addEventListener('click', () => go(state.index - 1));
  next.addEventListener('click', () => go(state.index + 1));
  slider.addEventListener('input', () => go(Number(slider.value) - 1));
  figure.addEventListener('keydown', (e) => {
    const moves = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1, PageUp: -10, PageDown: 10 };
    if (e.key in moves) go(state.index + moves[e.key]);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(n - 1);
    else return;
    e.preventDefault();
  });
  figure.addEventListener('wheel', (e) => {
    e.preventDefault();
    state.wheel += e.deltaMode === 1 ? e.deltaY * 40 : e.deltaMode === 2 ? e.deltaY * 800 : e.deltaY;
    while (Math.abs(state.wheel) >= WHEEL_STEP) {
      const dir = Math.sign(state.wheel);
      state.wheel -= dir * WHEEL_STEP;
      go(state.index + dir);
    }
  }, { passive: false });
  for (const b of presetButtons) {
    b.addEventListener('click', () => {
      state.preset = PRESETS.find((p) => p.id === b.dataset.preset);
      state.custom = null;
      if (state.preset.window) [center.value, width.value] = state.preset.window.map(String);
      draw();
    });
  }
  customForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const c = Number(center.value);
    const w = Number(width.value);
    if (center.value === '' || width.value === '' || !Number.isFinite(c) || !Number.isFinite(w) || w < 1) {
      problem.textContent = 'A window needs a centre and a width of at least 1.';
      problem.hidden = false;
      return;
    }
    state.custom = [c, w];
    draw();
  });

  const el = h('div', { class: 'viewer', dataset: { series: s.uid, images: String(n) } },
    h('div', { class: 'viewer-tools' },
      h('div', { class: 'presets', role: 'group', 'aria-label': 'Window presets' }, presetButtons),
      customForm),
    figure,
    h('p', { id: 'viewer-help', class: 'muted' },
      'Scroll through the images with the buttons, the slider, the arrow keys (Page Up/Down by ten, Home, End) or the mouse wheel over the image.'),
    h('div', { class: 'viewer-nav' }, prev,
      h('label', { for: 'frame-slider' }, 'Image'), slider, pos, next),
    problem);
  if (!n) {
    replace(el, h('p', { class: 'msg msg-missing' }, 'This series has no images stored here.'));
    return el;
  }
  draw();
  return el;
}

// seriesLabel is one line about a series for lists and headings.
export function seriesLabel(s) {
  return [(s.modality || 'Series') + (s.number != null ? ' series ' + s.number : ''), s.description,
    s.count != null ? s.count + (s.count === 1 ? ' image' : ' images') : null].filter(Boolean).join(' · ');
}
