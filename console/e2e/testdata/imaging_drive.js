// imaging_drive.js drives Ember Console's Imaging screens in headless
// Chromium and prints what it saw as JSON on stdout; the Go test
// (imaging_e2e_test.go) decides what is right. Every screen is checked with
// axe-core and photographed. The page helpers are lib.js's.
// Usage: node imaging_drive.js <playwright-core dir> <chromium> <config.json>
// config: {base, password, axe, shots, users: {doctor, patient}, study (its
//          UID), patient (the study's Patient id), patientName (a prefix of
//          the DICOM PatientName), model (one to run)}
const { driver } = require('./lib.js');

// The refusals the scenario provokes on purpose (a patient's DICOMweb
// search) are logged by the browser as failed loads, not console faults.
const { cfg, out, run, newPage, step, ready, go, check, signIn } = driver({
  name: 'imaging drive',
  expectedNetwork: /^Failed to load resource: the server responded with a status of (403|404)\b/,
  contextOptions: { viewport: { width: 1400, height: 1000 } },
});

run(asDoctor, asPatient);

// image reads an <img>: decoded (complete with a natural size), its
// source and what the viewer recorded on it.
function image(page, sel) {
  return page.$eval(sel, (i) => ({ decoded: i.complete && i.naturalWidth > 0, width: i.naturalWidth, src: i.getAttribute('src') || '',
    alt: i.alt, state: i.dataset.state || '', index: i.dataset.index == null ? -1 : Number(i.dataset.index),
    instance: i.dataset.instance || '', window: i.dataset.window == null ? null : i.dataset.window }));
}

// viewerAt waits until the viewer shows image k (0-based), decoded.
async function viewerAt(page, k, win) {
  await page.waitForFunction(([k, win]) => {
    const i = document.querySelector('#viewer-image');
    return i && i.dataset.state === 'loaded' && i.dataset.index === String(k) && (win == null || i.dataset.window === win) &&
      !document.querySelector('#viewer-figure[aria-busy]');
  }, [k, win]);
  return image(page, '#viewer-image');
}

async function asDoctor(browser) {
  const page = await newPage(browser, 'doctor');
  await signIn(page, cfg.users.doctor);
  const r = (out.results.doctor = {});

  step('Imaging: the studies');
  await page.click('#nav a[data-nav="imaging"]');
  await page.waitForFunction(() => location.hash === '#/imaging');
  await ready(page, 'Imaging');
  r.navCurrent = await page.$eval('#nav a[data-nav="imaging"]', (a) => a.getAttribute('aria-current'));
  r.studies = await page.$$eval('#study-table tbody tr', (rs) => rs.map((x) => x.dataset.study));
  await check(page, 'imaging-studies');

  step('filters');
  await page.fill('#filter-PatientName', cfg.patientName);
  await page.fill('#filter-ModalitiesInStudy', 'CT');
  await page.fill('#filter-from', '2004-01-01');
  await page.fill('#filter-to', '2004-12-31');
  await page.click('#study-search');
  await page.waitForFunction(() => location.hash.includes('ModalitiesInStudy=CT'));
  await ready(page, 'Imaging');
  r.filtered = await page.$$eval('#study-table tbody tr', (rs) => rs.map((x) => x.dataset.study));
  r.filteredHash = await page.evaluate(() => location.hash);
  await page.fill('#filter-ModalitiesInStudy', 'MR');
  await page.click('#study-search');
  await page.waitForFunction(() => location.hash.includes('ModalitiesInStudy=MR'));
  await ready(page, 'Imaging');
  r.noMatch = await page.$eval('#study-count', (x) => x.textContent);
  await go(page, '#/imaging', 'Imaging');

  step('open the study');
  await page.click('#study-table tbody tr[data-study="' + cfg.study + '"] a');
  await page.waitForFunction((u) => location.hash === '#/imaging/' + u, cfg.study);
  await ready(page);
  r.title = await page.$eval('#screen-title', (x) => x.textContent);
  r.series = await page.$$eval('#series-list .series-item', (bs) => bs.map((b) => ({ uid: b.dataset.series, pressed: b.getAttribute('aria-pressed'), text: b.textContent })));
  await page.waitForFunction(() => {
    const i = document.querySelector('#series-list img.thumb-img');
    return i && i.dataset.state !== 'loading';
  });
  r.thumbnail = await image(page, '#series-list img.thumb-img');

  step('viewer: scroll');
  const images = await page.$eval('.viewer', (v) => Number(v.dataset.images));
  r.images = images;
  const mid = Math.floor((images - 1) / 2);
  r.first = await viewerAt(page, mid);
  await page.click('#frame-next');
  r.next = await viewerAt(page, mid + 1);
  await page.focus('#viewer-figure');
  await page.keyboard.press('ArrowUp');
  r.key = await viewerAt(page, mid);
  const box = await page.$eval('#viewer-image', (i) => { const b = i.getBoundingClientRect(); return { x: b.x + b.width / 2, y: b.y + b.height / 2 }; });
  await page.mouse.move(box.x, box.y);
  await page.mouse.wheel(0, 100);
  r.wheel = await viewerAt(page, mid + 1);
  await page.fill('#frame-slider', '1');
  r.slider = await viewerAt(page, 0);
  r.sliderText = await page.$eval('#frame-pos', (x) => x.textContent);

  step('viewer: window presets');
  await page.click('.preset[data-preset="lung"]');
  r.lung = await viewerAt(page, 0, '-600,1500');
  r.lungPressed = await page.$eval('.preset[data-preset="lung"]', (b) => b.getAttribute('aria-pressed'));
  await page.click('.preset[data-preset="bone"]');
  r.bone = await viewerAt(page, 0, '300,1500');
  await page.fill('#window-center', '50');
  await page.fill('#window-width', '350');
  await page.click('#window-custom [type=submit]');
  r.custom = await viewerAt(page, 0, '50,350');
  r.caption = await page.$eval('#viewer-caption', (x) => x.textContent);
  await check(page, 'imaging-viewer');

  step('AI findings: run a model');
  await page.waitForSelector('#findings-summary');
  r.findingsBefore = await page.$eval('#findings-summary', (x) => x.textContent);
  r.reportsBefore = await page.$$eval('.finding', (fs) => fs.length);
  r.models = await page.$$eval('#run-model-name option', (os) => os.map((o) => o.value));
  await page.selectOption('#run-model-name', cfg.model);
  await page.click('#run-model');
  await page.waitForSelector('#run-tasks li', { timeout: 20000 });
  r.taskSeen = await page.$$eval('#run-tasks li', (ls) => ls.map((l) => l.dataset.status));
  await page.waitForSelector('#run-status[data-state="completed"], #run-status[data-state="failed"]', { timeout: 60000 });
  r.runStatus = await page.$eval('#run-status', (x) => ({ state: x.dataset.state, text: x.textContent }));
  r.runTasks = await page.$$eval('#run-tasks li', (ls) => ls.map((l) => ({ id: l.dataset.task, status: l.dataset.status })));
  await page.waitForSelector('.finding[data-model="' + cfg.model + '"]');
  await page.waitForFunction(() => !document.querySelector('#run-model').disabled);
  r.findings = await page.$$eval('.finding', (fs) => fs.map((f) => ({ report: f.dataset.report, model: f.dataset.model, status: f.dataset.status,
    heading: f.querySelector('h3').textContent, conclusion: (f.querySelector('.finding-conclusion') || {}).textContent || '',
    observations: [...f.querySelectorAll('.finding-observations li')].map((l) => l.textContent) })));
  r.findingsAfter = await page.$eval('#findings-summary', (x) => x.textContent);
  r.runs = await page.$$eval('#runs-table tbody tr', (rs) => rs.map((x) => ({ id: x.dataset.task, status: x.dataset.status })));
  await check(page, 'imaging-findings');

  step('the chart\'s Imaging section');
  await go(page, '#/patient/' + cfg.patient);
  const card = '#chart-imaging li[data-study="' + cfg.study + '"]';
  await page.waitForSelector(card);
  await page.waitForFunction((c) => {
    const i = document.querySelector(c + ' img.thumb-img');
    return !i || i.dataset.state !== 'loading';
  }, card);
  r.chart = await page.$eval(card, (li) => ({ link: (li.querySelector('a') || {}).getAttribute('href'), ai: (li.querySelector('.ai-status') || {}).textContent,
    img: Boolean(li.querySelector('img.thumb-img')), text: li.textContent }));
  r.chartThumb = r.chart.img ? await image(page, card + ' img.thumb-img') : null;
  await check(page, 'imaging-chart');
  await page.click(card + ' a');
  await page.waitForFunction((u) => location.hash === '#/imaging/' + u, cfg.study);
  await ready(page);
  r.fromChart = await page.evaluate(() => location.hash);

  step('a study that is not there');
  await go(page, '#/imaging/1.2.3.4.5');
  r.absent = await page.$eval('#main .msg', (m) => ({ text: m.textContent, cls: m.className }));
  await page.context().close();
}

async function asPatient(browser) {
  const page = await newPage(browser, 'patient');
  await signIn(page, cfg.users.patient);
  const r = (out.results.patient = {});
  step('a patient opens Imaging');
  await go(page, '#/imaging', 'Imaging');
  r.studies = await page.$eval('#study-results .msg', (m) => ({ text: m.textContent, cls: m.className }));
  await check(page, 'imaging-patient-denied');
  step('a patient\'s own chart');
  await go(page, '#/patient/' + cfg.patient);
  const card = '#chart-imaging li[data-study="' + cfg.study + '"]';
  await page.waitForSelector(card);
  r.chart = await page.$eval(card, (li) => ({ ai: (li.querySelector('.ai-status') || {}).textContent, thumb: li.querySelector('.thumb').textContent }));
  await check(page, 'imaging-patient-chart');
  await page.context().close();
}
