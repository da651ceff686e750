// Drives Ember Console's Admin screen in headless Chromium as an admin,
// then as the user the admin added, and prints what it saw as JSON on
// stdout; the Go test decides what is right. Every Admin screen is checked
// with axe-core and photographed.
// Usage: node admin_drive.js <playwright-core dir> <chromium> <config.json>
// config: {base, password, axe, shots, admin (username), app: {id, redirect,
//          launch, scope}, service and old (client ids), family (to search),
//          patient (that family's patient id), user: {name, first, second,
//          fhirUser}}
const fs = require('fs');
const { driver } = require('./lib.js');

// Refusals the scenario provokes on purpose: a taken client id and
// username (409), an export and an audit search the server refuses (400).
const { cfg, out, run, newPage, step, ready, go, check, login, signIn } = driver({
  name: 'admin drive',
  expectedNetwork: /^Failed to load resource: the server responded with a status of (400|409)\b/,
  contextOptions: { permissions: ['clipboard-read', 'clipboard-write'] },
});

run(asAdmin, asNewUser);

// fieldNote waits for the error beside field (a control's id) and reads it.
async function fieldNote(page, id) {
  await page.waitForSelector('#' + id + '-error:not([hidden])');
  return page.evaluate((i) => ({
    text: document.getElementById(i + '-error').textContent,
    invalid: (document.getElementById(i).getAttribute('aria-invalid') || '') === 'true',
  }), id);
}

// gone waits until table (redrawn after a removal) is back without row.
async function gone(page, table, row) {
  await page.waitForFunction(([t, r]) => document.querySelector(t) && !document.querySelector(t + ' ' + r), [table, row]);
}

const rowIDs = (page, sel, key) => page.$$eval(sel, (rs, k) => rs.map((x) => x.dataset[k]), key);

async function asAdmin(browser) {
  const page = await newPage(browser, 'admin');
  await signIn(page, cfg.admin, cfg.password);
  await apps(page);
  await users(browser, page);
  await exportsSection(page);
  await guides(page);
  await audit(page);
  await page.context().close();
}

async function apps(page) {
  const r = (out.results.apps = {});
  r.adminNav = await page.$eval('#nav', (n) => Boolean(n.querySelector('a[data-nav="admin"]')) && n.textContent.includes('Admin'));
  step('admin: SMART apps');
  await page.click('#nav a[data-nav="admin"]');
  await ready(page, 'Admin: SMART apps');
  await page.waitForSelector('#clients');

  step('apps: client-side and server-side errors');
  await page.click('#app-add-submit');
  r.empty = await fieldNote(page, 'app-form-id');
  await page.fill('#app-form-id', 'ember-console');
  await page.fill('#app-form-redirect_uris', 'https://app.example/callback');
  await page.click('#app-add-submit');
  await page.waitForFunction(() => document.querySelector('#app-form-id-error').textContent.includes('exists'));
  r.duplicate = await fieldNote(page, 'app-form-id');

  step('apps: register the public app and a symmetric service');
  await page.fill('#app-form-id', cfg.app.id);
  await page.selectOption('#app-form-type', 'public');
  await page.fill('#app-form-redirect_uris', cfg.app.redirect);
  await page.fill('#app-form-launch_uri', cfg.app.launch);
  await page.fill('#app-form-scope', cfg.app.scope);
  await page.click('#app-add-submit');
  await page.waitForSelector('#clients tr[data-id="' + cfg.app.id + '"]');
  await page.fill('#app-form-id', cfg.service);
  await page.selectOption('#app-form-type', 'symmetric');
  await page.check('#app-form-grant-client_credentials');
  await page.fill('#app-form-scope', 'system/Patient.rs');
  await page.click('#app-add-submit');
  await page.waitForSelector('#client-secret');
  r.secret = await page.$eval('#client-secret', (i) => i.value);
  await page.click('#client-secret-copy');
  await page.waitForFunction(() => /Copied|Selected/.test(document.querySelector('#client-secret-copy + .copy-note').textContent));
  r.copied = await page.evaluate(() => navigator.clipboard.readText().catch((e) => 'clipboard: ' + e.message));
  await page.waitForSelector('#clients tr[data-id="' + cfg.service + '"]');
  await page.fill('#app-form-id', cfg.old);
  await page.selectOption('#app-form-type', 'public');
  await page.fill('#app-form-redirect_uris', 'https://old.example/callback');
  await page.click('#app-add-submit');
  await page.waitForSelector('#clients tr[data-id="' + cfg.old + '"]');
  r.listed = await rowIDs(page, '#clients tbody tr', 'id');
  await check(page, 'admin-apps');

  step('apps: the launch URL');
  const row = '#clients tr[data-id="' + cfg.app.id + '"]';
  await page.click(row + ' .copy-launch');
  r.launchURLCopy = await page.$eval('#app-action input.copyable', (i) => i.value);

  step('apps: EHR launch for a patient');
  await page.click(row + ' .ehr-launch');
  await page.click('#launch-search');
  await fieldNote(page, 'launch-form-patient'); // nothing typed
  await page.fill('#launch-form-patient', cfg.family);
  await page.click('#launch-search');
  await page.click('#launch-patients li[data-id="' + cfg.patient + '"] button');
  await page.waitForSelector('#launch-open');
  r.launchURL = await page.$eval('#launch-open', (a) => a.href);
  await check(page, 'admin-launch');
  const [app] = await Promise.all([page.context().waitForEvent('page'), page.click('#launch-open')]);
  app.setDefaultTimeout(15000);
  await login(app, cfg.admin, cfg.password, /\/index\.html/);
  await app.waitForFunction(() => /^(OK|ERROR)/.test(document.querySelector('#result').textContent));
  r.appShows = await app.$eval('#result', (x) => x.textContent);
  await app.close();

  step('apps: remove one');
  await page.click('#clients tr[data-id="' + cfg.old + '"] .remove-client');
  await page.click('#confirm-remove-client');
  await gone(page, '#clients', 'tr[data-id="' + cfg.old + '"]');
  r.removed = await rowIDs(page, '#clients tbody tr', 'id');
}

async function users(browser, page) {
  const r = (out.results.users = {});
  const u = cfg.user;
  step('admin: users');
  await page.click('.subnav a[data-section="users"]');
  await ready(page, 'Admin: Users');
  await page.waitForSelector('#users');
  const fill = async (name, pw, role, fhirUser) => {
    await page.fill('#user-form-username', name);
    await page.fill('#user-form-password', pw);
    await page.selectOption('#user-form-role', role);
    await page.fill('#user-form-fhir_user', fhirUser);
    await page.click('#user-add-submit');
  };
  await fill(u.name, 'short', 'nurse', u.fhirUser);
  r.shortPassword = await fieldNote(page, 'user-form-password');
  await fill(cfg.admin, u.first, 'nurse', u.fhirUser);
  await page.waitForFunction(() => document.querySelector('#user-form-username-error').textContent.includes('exists'));
  r.duplicate = await fieldNote(page, 'user-form-username');

  step('users: add two');
  await fill(u.name, u.first, 'nurse', u.fhirUser);
  const nina = '#users tr[data-username="' + u.name + '"]';
  await page.waitForSelector(nina);
  r.added = await page.$eval(nina, (tr) => ({ role: tr.dataset.role, fhirUser: tr.children[2].textContent }));
  await fill('olaf', u.first, 'receptionist', 'Practitioner/olaf');
  await page.waitForSelector('#users tr[data-username="olaf"]');

  step('users: reset the password');
  await page.click(nina + ' .reset-password');
  await page.fill('#password-form-password', u.second);
  await page.fill('#password-form-again', u.second + 'x');
  await page.click('#password-submit');
  await fieldNote(page, 'password-form-again');
  await page.fill('#password-form-again', u.second);
  await page.click('#password-submit');
  await page.waitForSelector('#user-action .msg-ok');
  r.resetNote = await page.$eval('#user-action .msg-ok', (m) => m.textContent);
  await check(page, 'admin-users');

  step('users: change the role');
  await page.click(nina + ' .change-role');
  await page.selectOption('#role-form-role', 'doctor');
  await page.click('#role-submit');
  await page.waitForSelector(nina + '[data-role="doctor"]');
  r.roleNote = await page.$eval('#user-action .msg-ok', (m) => m.textContent);
  r.roleAfter = await page.$eval(nina, (tr) => tr.dataset.role);

  step('users: a failed login, then unlock');
  const other = await browser.newContext();
  const stranger = await other.newPage();
  await stranger.goto(cfg.base + '/console/');
  await stranger.click('#sign-in');
  await stranger.waitForURL(/\/auth\/login/);
  await stranger.fill('input[name=username]', u.name);
  await stranger.fill('input[name=password]', 'not the password');
  await Promise.all([stranger.waitForResponse((res) => res.request().method() === 'POST' && res.url().includes('/auth/login')),
    stranger.click('form:has(input[name=username]) [type=submit]')]);
  await other.close();
  await page.reload();
  await ready(page, 'Admin: Users');
  await page.waitForSelector(nina + ' .unlock:not([disabled])');
  r.failedBefore = await page.$eval(nina, (tr) => tr.children[3].textContent);
  await page.click(nina + ' .unlock');
  // The list is drawn anew after the unlock: wait for the new row.
  await page.waitForFunction((sel) => {
    const tr = document.querySelector(sel);
    return tr && tr.children[3].textContent === '0';
  }, nina);
  r.failedAfter = await page.$eval(nina, (tr) => tr.children[3].textContent);
  r.unlockNote = await page.$eval('#user-action .msg-ok', (m) => m.textContent);

  step('users: remove one');
  await page.click('#users tr[data-username="olaf"] .remove-user');
  await page.click('#confirm-remove-user');
  await gone(page, '#users', 'tr[data-username="olaf"]');
  r.listed = await rowIDs(page, '#users tbody tr', 'username');
}

async function exportsSection(page) {
  const r = (out.results.exports = {});
  step('admin: bulk exports');
  await page.click('.subnav a[data-section="exports"]');
  await ready(page, 'Admin: Bulk exports');
  await page.selectOption('#export-form-level', 'patient');
  await page.fill('#export-form-_type', 'Organization');
  await page.click('#export-submit');
  r.compartment = await fieldNote(page, 'export-form-_type');

  step('exports: the Patient resources');
  await page.selectOption('#export-form-level', 'system');
  await page.fill('#export-form-_type', 'Patient');
  await page.click('#export-submit');
  await page.waitForSelector('#export-table tbody tr[data-state="complete"]', { timeout: 30000 });
  const done = '#export-table tbody tr[data-state="complete"]';
  r.state = await page.$eval(done, (tr) => tr.dataset.state);
  r.files = await page.$$eval(done + ' button.download', (bs) => bs.map((b) => b.dataset.name));
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(done + ' button.download')]);
  r.download = { name: dl.suggestedFilename(), text: fs.readFileSync(await dl.path(), 'utf8') };
  await check(page, 'admin-exports');

  step('exports: start one and cancel it');
  await page.fill('#export-form-_type', '');
  await page.click('#export-submit');
  await page.waitForFunction(() => document.querySelectorAll('#export-table tbody tr').length === 2);
  const newest = '#export-table tbody tr:first-child';
  await page.click(newest + ' .cancel-export');
  await page.click('#confirm-cancel-export');
  await page.waitForSelector(newest + '[data-state="cancelled"]');

  step('exports: the list after a reload');
  await page.reload();
  await ready(page, 'Admin: Bulk exports');
  await page.waitForSelector('#export-table tbody tr[data-state="cancelled"]');
  r.afterReload = await page.$$eval('#export-table tbody tr', (rs) => rs.length);
  r.cancelled = await page.$eval('#export-table tbody tr:first-child', (tr) => tr.dataset.state);
  r.cancelledStored = await page.evaluate((u) => JSON.parse(sessionStorage.getItem('ember-console.exports.' + u))[0].state, cfg.admin);
}

async function guides(page) {
  const r = (out.results.guides = {});
  step('admin: implementation guides');
  await page.click('.subnav a[data-section="guides"]');
  await ready(page, 'Admin: Implementation guides');
  await page.waitForSelector('#profile-count');
  r.claims = await page.$$eval('#instantiates li', (ls) => ls.map((l) => l.textContent));
  r.packages = await page.$$eval('table.guide', (ts) => ts.map((t) => t.dataset.package));
  r.count = await page.$eval('#profile-count', (p) => p.textContent);
  await check(page, 'admin-guides');
}

async function audit(page) {
  const r = (out.results.audit = {});
  step('admin: audit log, a date the server refuses');
  await go(page, '#/admin/audit?date=gebogus', 'Admin: Audit log');
  r.badDate = await fieldNote(page, 'audit-form-date');

  step('audit: the admin\'s own user add');
  await page.click('.subnav a[data-section="audit"]');
  await ready(page, 'Admin: Audit log');
  await page.fill('#audit-form-agent', cfg.admin);
  await page.fill('#audit-form-subtype', 'user add');
  // The trail is written in batches each second: ask again until it is there.
  for (let i = 0; i < 20; i++) {
    await page.click('#audit-submit');
    await page.waitForFunction(() => location.hash.includes('subtype='));
    await ready(page, 'Admin: Audit log');
    await page.waitForSelector('#audit-count');
    if (await page.$('#audit-log')) break;
    await page.waitForTimeout(500);
  }
  r.rows = await page.$$eval('#audit-log tbody', (bs) => bs.map((b) => ({
    subtype: b.querySelector('.subtype').textContent, agent: b.querySelector('.agent').textContent })));
  if (r.rows.length) {
    await page.click('#audit-log tbody:first-of-type .toggle-json');
    r.expanded = await page.$eval('#audit-log tbody:first-of-type .toggle-json', (b) => b.getAttribute('aria-expanded'));
    r.json = await page.$eval('#audit-log tbody:first-of-type tr.audit-json', (tr) => (tr.hidden ? '' : tr.textContent));
  }
  await check(page, 'admin-audit');
}

async function asNewUser(browser) {
  const page = await newPage(browser, cfg.user.name);
  await signIn(page, cfg.user.name, cfg.user.second);
  const r = (out.results.newUser = {});
  r.who = await page.$eval('#who', (w) => w.textContent);
  r.adminNav = await page.$eval('#nav', (n) => Boolean(n.querySelector('a[data-nav="admin"]')));
  step('the new user opens #/admin');
  await go(page, '#/admin', 'Admin');
  r.deniedText = await page.$eval('#main .msg', (m) => m.textContent);
  r.deniedClass = await page.$eval('#main .msg', (m) => m.className);
  await check(page, 'admin-denied');
  await page.context().close();
}
