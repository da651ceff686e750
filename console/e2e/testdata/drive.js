// Drives Ember Console in headless Chromium as five users (admin,
// receptionist, patient, nurse, pharmacist) and prints what it saw as JSON
// on stdout; the Go test decides what is right. Every screen is checked
// with axe-core and photographed.
// Usage: node drive.js <playwright-core dir> <chromium> <config.json>
// config: {base, password, axe (path of axe.min.js), shots (directory),
//          users: {admin, receptionist, patient, nurse, pharmacist},
//          family (to search), clinicalTypes (whose counts the nurse reads), lockman (that
//          patient's id), observation (one of theirs to edit), hostile (a Patient
//          whose name and narrative carry markup)}
const { driver } = require('./lib.js');

// Browser log lines that are the server's answers, not the console's
// faults: the refusals the scenario provokes on purpose (a receptionist's
// Observation search, another patient's chart, an invalid save, the
// pharmacist's chart and Observation).
const { cfg, out, run, newPage, step, ready, go, check, signIn } = driver({
  name: 'drive',
  expectedNetwork: /^Failed to load resource: the server responded with a status of (403|404|410|422)\b/,
  checkSignIn: true,
});

run(asAdmin, asReceptionist, asPatient, asNurse, asPharmacist);

async function editorText(page) {
  return page.$eval('#editor', (t) => t.value);
}

// noteFor waits for the note of an issue on expr from source and returns
// its line and text, with the line the editor's text has expr's member on.
async function noteFor(page, source, member) {
  const sel = '.editor-notes [data-source="' + source + '"][data-expression*="' + member.expr + '"]';
  await page.waitForSelector(sel);
  const note = await page.$eval(sel, (n) => ({ line: Number(n.dataset.line), text: n.textContent }));
  const lines = (await editorText(page)).split('\n');
  note.expectedLine = lines.findIndex((l) => l.includes(member.text)) + 1;
  note.listed = await page.$$eval('#editor-issues li[data-source="' + source + '"]', (ls) => ls.map((l) => l.textContent));
  return note;
}

// chartShown waits for the chart's plot and reads what it shows: the
// plotted code and its points, the measurement select's groups and where
// its default option sits, the timeline's length.
async function chartShown(page) {
  await page.waitForSelector('#vitals-chart[data-points]');
  return page.evaluate(() => {
    const f = document.querySelector('#vitals-chart');
    const sel = document.querySelector('#vital-code');
    const chosen = sel.options[sel.selectedIndex];
    return { hash: location.hash, title: document.querySelector('#screen-title').textContent, code: f.dataset.code,
      points: Number(f.dataset.points), tableRows: document.querySelectorAll('#vitals-table tbody tr').length,
      canvas: Boolean(f.querySelector('canvas')), timeline: document.querySelectorAll('#timeline-list li').length,
      groups: [...sel.querySelectorAll('optgroup')].map((g) => g.label),
      chosenGroup: chosen && chosen.parentElement.tagName === 'OPTGROUP' ? chosen.parentElement.label : '',
      chosenFirst: sel.selectedIndex === 0 };
  });
}

async function asAdmin(browser) {
  const page = await newPage(browser, 'admin');
  await signIn(page, cfg.users.admin);
  const r = (out.results.admin = {});
  await page.waitForFunction(() => {
    const c = document.querySelector('#counts td[data-type="Patient"]');
    return c && c.textContent !== '…';
  });
  r.patientCount = await page.$eval('#counts td[data-type="Patient"]', (c) => c.textContent);
  r.observationCount = await page.$eval('#counts td[data-type="Observation"]', (c) => c.textContent);
  r.health = await page.$eval('#health', (c) => c.textContent);
  r.auditRows = await page.$$eval('#audit tbody tr', (rs) => rs.length);
  await check(page, 'overview');

  step('resources');
  await go(page, '#/resources', 'Resources');
  await page.waitForFunction(() => {
    const c = document.querySelector('#types td[data-type="Patient"]');
    return c && c.textContent !== '…';
  });
  await check(page, 'resources');

  step('search Patient by family');
  await go(page, '#/resources/Patient', 'Patient');
  await page.selectOption('.criterion select[id$="-param"]', 'family');
  await page.fill('.criterion input[id$="-value"]', cfg.family);
  await page.click('#search-submit');
  await page.waitForFunction((f) => location.hash.includes('family=' + f), cfg.family);
  await ready(page, 'Patient');
  await page.waitForSelector('#result-table tbody tr');
  r.searchRows = await page.$$eval('#result-table tbody tr', (rs) => rs.map((x) => x.dataset.id));
  await check(page, 'search');

  step('paging');
  const ids = () => page.$$eval('#result-table tbody tr', (rs) => rs.map((x) => x.dataset.id));
  await go(page, '#/resources/Observation?patient=' + cfg.lockman + '&_count=5', 'Observation');
  r.paging = { first: await ids() };
  await page.click('.pager a[rel=next]');
  await page.waitForFunction(() => location.hash.includes('_cursor='));
  await ready(page, 'Observation');
  r.paging.second = await ids();
  const second = await page.evaluate(() => location.hash);
  await page.click('.pager a[rel=prev]');
  await page.waitForFunction((h) => location.hash !== h, second);
  await ready(page, 'Observation');
  r.paging.back = await ids();

  step('open the chart');
  await go(page, '#/resources/Patient?family=' + cfg.family, 'Patient');
  await page.click('#result-table tbody tr a:has(.chart-link)');
  await page.waitForFunction(() => location.hash.startsWith('#/patient/'));
  await ready(page);
  r.chart = await chartShown(page);
  await check(page, 'chart');

  step('resource page');
  const obsRoute = '#/resource/Observation/' + cfg.observation;
  await go(page, obsRoute, 'Observation/' + cfg.observation);
  r.narrative = await page.$eval('#narrative, #main section', (n) => n.textContent.slice(0, 200));
  await check(page, 'resource');

  step('valid edit, then the diff of the two versions');
  await go(page, obsRoute + '/edit', 'Edit Observation/' + cfg.observation);
  await page.waitForFunction(() => document.querySelector('#validation-summary').textContent.startsWith('Valid'));
  let text = await editorText(page);
  await page.fill('#editor', text.replace('"status": "final"', '"status": "amended"'));
  await page.waitForFunction(() => document.querySelector('#validation-summary').textContent.startsWith('Valid'));
  await page.click('#save');
  await page.waitForFunction((h) => location.hash === h, obsRoute);
  await ready(page, 'Observation/' + cfg.observation);
  r.versions = await page.$$eval('#versions tbody tr', (rs) => rs.length);
  if (r.versions >= 2) {
    await page.click('#diff-run');
    await page.waitForSelector('#diff-summary');
    r.diff = await page.evaluate(() => ({ summary: document.querySelector('#diff-summary').textContent,
      added: [...document.querySelectorAll('#diff .diff-add')].map((x) => x.textContent),
      removed: [...document.querySelectorAll('#diff .diff-del')].map((x) => x.textContent) }));
    await check(page, 'history-diff');
  }

  step('invalid edit');
  await go(page, obsRoute + '/edit', 'Edit Observation/' + cfg.observation);
  await page.waitForFunction(() => document.querySelector('#validation-summary').textContent.startsWith('Valid'));
  text = await editorText(page);
  await page.fill('#editor', text.replace('"status": "amended"', '"status": "bogus"'));
  const member = { expr: 'Observation.status', text: '"status": "bogus"' };
  r.validateNote = await noteFor(page, 'validate', member);
  await check(page, 'editor');
  await page.click('#save');
  r.saveNote = await noteFor(page, 'save', member);
  r.saveStatus = await page.$eval('#save-status', (s) => s.textContent);

  step('imaging studies');
  await go(page, '#/imaging', 'Imaging');
  await check(page, 'imaging');

  step('hostile narrative and names');
  await go(page, '#/resource/Patient/' + cfg.hostile, 'Patient/' + cfg.hostile);
  r.hostile = await page.evaluate(() => {
    const n = document.querySelector('#narrative');
    return {
      summary: document.querySelector('#resource-summary').textContent,
      text: n ? n.textContent : null,
      hrefs: n ? [...n.querySelectorAll('a')].map((a) => a.getAttribute('href')) : [],
      ids: n ? [...n.querySelectorAll('[id]')].map((x) => x.id) : [],
      styled: n ? n.querySelectorAll('[style]').length : -1,
      imgSrcs: n ? [...n.querySelectorAll('img')].map((x) => x.getAttribute('src')) : [],
      scripts: document.querySelectorAll('#main script, #main [onerror]').length,
      mains: document.querySelectorAll('#main').length,
    };
  });
  await check(page, 'hostile-resource');
  await go(page, '#/patient/' + cfg.hostile);
  r.hostileChartTitle = await page.$eval('#screen-title', (x) => x.textContent);

  step('keyboard: the skip link');
  await page.reload();
  await ready(page);
  await page.keyboard.press('Tab');
  r.firstTab = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.press('Enter');
  r.afterSkip = await page.evaluate(() => ({ id: document.activeElement.id, hash: location.hash }));

  step('sign out');
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('ember-console.session')).access_token);
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in');
  r.stored = await page.evaluate(() => sessionStorage.getItem('ember-console.session'));
  // Asked from here, not the page: the revoked token's 401 is the test's own.
  const res = await fetch(cfg.base + '/fhir/Patient?_count=1', { headers: { Authorization: 'Bearer ' + token } });
  r.afterSignOutStatus = res.status;
  await page.context().close();
}

async function asReceptionist(browser) {
  const page = await newPage(browser, 'receptionist');
  await signIn(page, cfg.users.receptionist);
  const r = (out.results.receptionist = {});
  await page.waitForFunction(() => {
    const c = document.querySelector('#counts td[data-type="Patient"]');
    return c && c.textContent !== '…';
  });
  r.patientCount = await page.$eval('#counts td[data-type="Patient"]', (c) => c.textContent);
  r.observationCount = await page.$eval('#counts td[data-type="Observation"]', (c) => c.textContent);
  await check(page, 'receptionist-overview');

  step('receptionist searches Observation');
  await go(page, '#/resources/Observation', 'Observation');
  await page.waitForSelector('#results .msg');
  r.observationSearch = await page.$eval('#results .msg', (m) => ({ text: m.textContent, cls: m.className }));
  await check(page, 'receptionist-observation');

  step('receptionist opens a chart');
  await go(page, '#/patient/' + cfg.lockman);
  await page.waitForSelector('#vitals .msg');
  r.chartVitals = await page.$eval('#vitals .msg', (m) => m.textContent);
  r.chartTitle = await page.$eval('#screen-title', (m) => m.textContent);
  await check(page, 'receptionist-chart');
  await page.context().close();
}

async function asPatient(browser) {
  const page = await newPage(browser, 'patient');
  await signIn(page, cfg.users.patient);
  const r = (out.results.patient = {});
  await page.waitForFunction(() => location.hash.startsWith('#/patient/'));
  await ready(page);
  await page.waitForSelector('#vitals-chart[data-points], #vitals .msg, #vitals p');
  r.landing = await page.evaluate(() => ({ hash: location.hash, title: document.querySelector('#screen-title').textContent }));
  await check(page, 'patient-chart');

  step('patient opens another patient\'s chart');
  await go(page, '#/patient/' + cfg.lockman);
  r.other = await page.$eval('#main .msg', (m) => ({ text: m.textContent, cls: m.className }));

  step('patient searches Patient');
  await go(page, '#/resources/Patient', 'Patient');
  await page.waitForSelector('#result-count');
  r.search = await page.evaluate(() => ({ count: document.querySelector('#result-count').textContent,
    rows: [...document.querySelectorAll('#result-table tbody tr')].map((x) => x.dataset.id) }));
  await check(page, 'patient-search');
  await page.context().close();
}

// The nurse reads everything and records care but deletes nothing: the
// chart is drawn in full, an Observation offers Edit but no Delete, and
// the Resources list counts the clinical types.
async function asNurse(browser) {
  const page = await newPage(browser, 'nurse');
  await signIn(page, cfg.users.nurse);
  const r = (out.results.nurse = {});

  step('nurse opens a chart');
  await go(page, '#/patient/' + cfg.lockman);
  r.chart = await chartShown(page);
  await check(page, 'nurse-chart');

  step('nurse opens an Observation');
  const label = 'Observation/' + cfg.observation;
  await go(page, '#/resource/' + label, label);
  r.observation = await page.evaluate(() => {
    const edit = document.querySelector('#edit');
    return { editHref: edit ? edit.getAttribute('href') : null, del: Boolean(document.querySelector('#delete')),
      versions: document.querySelectorAll('#versions tbody tr').length };
  });
  await check(page, 'nurse-observation');

  step('nurse lists the resource types');
  await go(page, '#/resources', 'Resources');
  await page.waitForFunction((types) => types.every((t) => {
    const c = document.querySelector('#types td[data-type="' + t + '"]');
    return c && c.textContent !== '…';
  }), cfg.clinicalTypes);
  r.resources = await page.evaluate((types) => Object.fromEntries(types.map((t) => [t, {
    count: document.querySelector('#types td[data-type="' + t + '"]').textContent,
    canCreate: Boolean(document.querySelector('#types tr[data-type="' + t + '"] a[href="#/new/' + t + '"]')),
  }])), [...cfg.clinicalTypes, 'MedicationRequest', 'Patient']);
  await check(page, 'nurse-resources');
  await page.context().close();
}

// The pharmacist sees the patient and their medications, not their other
// clinical data: the chart's timeline holds the medications with the rest
// refused, the vital signs are refused, an Observation is refused, and a
// Patient search works.
async function asPharmacist(browser) {
  const page = await newPage(browser, 'pharmacist');
  await signIn(page, cfg.users.pharmacist);
  const r = (out.results.pharmacist = {});
  await page.waitForFunction(() => {
    const c = document.querySelector('#counts td[data-type="MedicationRequest"]');
    return c && c.textContent !== '…';
  });
  r.overview = await page.evaluate(() => Object.fromEntries(['Observation', 'MedicationRequest'].map((t) =>
    [t, document.querySelector('#counts td[data-type="' + t + '"]').textContent])));

  step('pharmacist opens a chart');
  await go(page, '#/patient/' + cfg.lockman);
  r.chart = await page.evaluate(() => {
    const kinds = {};
    for (const li of document.querySelectorAll('#timeline-list li')) kinds[li.dataset.kind] = (kinds[li.dataset.kind] || 0) + 1;
    const v = document.querySelector('#vitals .msg');
    return { title: document.querySelector('#screen-title').textContent, kinds,
      notes: [...document.querySelectorAll('#timeline-notes li')].map((x) => x.textContent),
      vitals: v ? { text: v.textContent, cls: v.className } : null,
      plotted: Boolean(document.querySelector('#vitals-chart')) };
  });
  await check(page, 'pharmacist-chart');

  step('pharmacist opens an Observation');
  const label = 'Observation/' + cfg.observation;
  await go(page, '#/resource/' + label, label);
  r.observation = await page.evaluate(() => {
    const m = document.querySelector('#main .msg');
    return { text: m ? m.textContent : '', cls: m ? m.className : '', json: Boolean(document.querySelector('#json')),
      edit: Boolean(document.querySelector('#edit')) };
  });
  await check(page, 'pharmacist-observation');

  step('pharmacist searches Patient');
  await go(page, '#/resources/Patient?family=' + cfg.family, 'Patient');
  await page.waitForSelector('#result-count');
  r.search = await page.evaluate(() => ({ count: document.querySelector('#result-count').textContent,
    rows: [...document.querySelectorAll('#result-table tbody tr')].map((x) => x.dataset.id) }));
  await check(page, 'pharmacist-search');
  await page.context().close();
}
