// Drives a SMART standalone launch in headless Chromium: opens the app's
// launch page, answers Ember's login, patient picker and consent pages, and
// prints what the app shows once fhirclient has its token and has read the
// patient. Usage: node drive.js <playwright-core dir> <chromium> <launch url> <username> <password>
const [pwDir, chromium, launchURL, username, password] = process.argv.slice(2);
const { chromium: browserType } = require(pwDir);

(async () => {
  const browser = await browserType.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage();
  page.on('console', (m) => console.error('console:', m.text()));
  const deadline = Date.now() + 60000;
  const steps = [];
  try {
    await page.goto(launchURL);
    while (Date.now() < deadline) {
      try {
        if (await step()) return;
      } catch (e) {
        // The page navigated under us (a redirect of the OAuth dance): look again.
        if (!/context was destroyed|navigation|Target closed/i.test(e.message)) throw e;
        await page.waitForTimeout(100);
      }
    }
    throw new Error('timed out at ' + page.url() + ': ' + (await page.content()).slice(0, 2000));
  } catch (e) {
    console.error('FAILED after steps', JSON.stringify(steps), e.message);
    await browser.close();
    process.exit(1);
  }

  // step acts on the current page; true once the app has shown its result.
  async function step() {
      await page.waitForLoadState('domcontentloaded');
      const out = await page.$('#result');
      if (out) {
        const text = (await out.textContent()) || '';
        if (text.startsWith('ERROR')) throw new Error('app: ' + text);
        if (text) {
          console.log(JSON.stringify({ steps, result: JSON.parse(text) }));
          await browser.close();
          return true;
        }
      } else if (await page.$('input[name=username]')) {
        steps.push('login');
        await page.fill('input[name=username]', username);
        await page.fill('input[name=password]', password);
        await Promise.all([page.waitForNavigation(), page.click('form:has(input[name=username]) [type=submit]')]);
        return false;
      } else if (await page.$('[name=patient]')) {
        steps.push('patient-picker');
        const sel = await page.$('select[name=patient]');
        if (sel) {
          const first = await page.$eval('select[name=patient] option[value]:not([value=""])', (o) => o.value);
          await page.selectOption('select[name=patient]', first);
        } else {
          await page.check('input[name=patient] >> nth=0');
        }
        await Promise.all([page.waitForNavigation(), page.click('form:has([name=patient]) [type=submit]')]);
        return false;
      } else if (await page.$('input[name=scope]')) {
        steps.push('consent');
        const form = 'form:has(input[name=scope])';
        const allow = (await page.$(form + ' [type=submit][value*="llow" i]')) || (await page.$(form + ' button:has-text("Allow")')) || (await page.$(form + ' [type=submit]'));
        await Promise.all([page.waitForNavigation(), allow.click()]);
        return false;
      }
      await page.waitForTimeout(200);
      return false;
  }
})();
