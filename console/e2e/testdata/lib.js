// lib.js holds the page helpers the console's browser drivers (drive.js,
// admin_drive.js, imaging_drive.js) share: the command line and config,
// the collected output, pages that sort browser log lines into console
// faults and expected refusals, waiting for a screen, axe-core and a
// screenshot of each, and signing in. What differs between the drivers
// is passed to driver().
// Usage (from a driver): const { driver } = require('./lib.js');
const fs = require('fs');
const path = require('path');

// driver reads the command line (<playwright-core dir> <chromium>
// <config.json>) and returns the helpers bound to that run.
// opts: name (prefix of progress lines on stderr), expectedNetwork (the
// browser log lines that are refusals the scenario provokes on purpose,
// not the console's faults), contextOptions (merged into the browser
// context's: viewport, permissions), checkSignIn (check the sign-in
// screen the first time it is shown).
function driver({ name, expectedNetwork, contextOptions = {}, checkSignIn = false }) {
  const [pwDir, chromium, configPath] = process.argv.slice(2);
  const { chromium: browserType } = require(pwDir);
  const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  const axeSource = fs.readFileSync(cfg.axe, 'utf8');
  const out = { screens: [], consoleErrors: [], networkRefusals: [], dialogs: [], results: {}, steps: [] };

  // run launches Chromium, plays each scene in turn (stopping at the first
  // failure, which is reported) and prints out as JSON on stdout.
  async function run(...scenes) {
    const browser = await browserType.launch({
      executablePath: chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    try {
      for (const scene of scenes) await scene(browser);
    } catch (e) {
      out.failure = e.stack || String(e);
    }
    await browser.close();
    console.log(JSON.stringify(out));
  }

  async function newPage(browser, who) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...contextOptions });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const entry = { who, text: m.text(), url: (m.location() || {}).url || '', page: page.url() };
      (expectedNetwork.test(entry.text) ? out.networkRefusals : out.consoleErrors).push(entry);
    });
    page.on('dialog', (d) => { out.dialogs.push({ who, text: d.message() }); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => out.consoleErrors.push({ who, text: 'pageerror: ' + (e.stack || e.message), page: page.url() }));
    return page;
  }

  function step(s) {
    out.steps.push(s);
    console.error(name + ':', s);
  }

  // ready waits until the screen of the current route has loaded.
  async function ready(page, title) {
    await page.waitForFunction(() => {
      const v = document.querySelector('#main .view');
      return v && v.dataset.state === 'ready' && v.dataset.route === (location.hash || '#/');
    });
    if (title) await page.waitForFunction((t) => (document.querySelector('#screen-title') || {}).textContent === t, title);
  }

  async function go(page, route, title) {
    await page.evaluate((r) => { location.hash = r; }, route);
    await page.waitForFunction((r) => location.hash === r, route);
    await ready(page, title);
  }

  // check runs axe-core on the page and takes a screenshot. axe is
  // evaluated through the DevTools protocol, which the console's CSP does
  // not govern: a <script> tag with inline content (addScriptTag) is refused
  // by that CSP, and bypassing the CSP would hide the violations this test
  // exists to catch.
  async function check(page, name) {
    const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
    if (!loaded) await page.evaluate(axeSource);
    const violations = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
        targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    });
    const shot = path.join(cfg.shots, name + '.png');
    await page.screenshot({ path: shot, fullPage: true });
    out.screens.push({ name, url: page.url(), violations, screenshot: shot });
  }

  // login answers Ember's login and consent pages, then waits for after.
  async function login(page, user, password, after) {
    await page.waitForURL(/\/auth\/login/);
    await page.fill('input[name=username]', user);
    await page.fill('input[name=password]', password);
    await Promise.all([page.waitForURL(/\/auth\/consent/), page.click('form:has(input[name=username]) [type=submit]')]);
    await Promise.all([page.waitForURL(after), page.click('button[name=allow]')]);
  }

  // signIn signs user in from the console's sign-in screen (password
  // defaults to the config's).
  async function signIn(page, user, password = cfg.password) {
    step('sign in as ' + user);
    await page.goto(cfg.base + '/console/');
    await page.waitForSelector('#sign-in');
    if (checkSignIn && !out.screens.some((s) => s.name === 'sign-in')) await check(page, 'sign-in');
    await Promise.all([page.waitForURL(/\/auth\/login/), page.click('#sign-in')]);
    await login(page, user, password, /\/console\/#/);
    await page.waitForSelector('#sign-out');
    await ready(page);
  }

  return { cfg, out, run, newPage, step, ready, go, check, login, signIn };
}

module.exports = { driver };
