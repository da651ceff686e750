// Drives headless Chromium through Ember Console's screens for make bench
// (console.go): for each route, fresh browser contexts (a cold cache each
// time) load the screen; the page itself notes its first contentful paint
// and when the screen's view says it is ready (its data shown).
// Usage: node console_paint.js PLAYWRIGHT_DIR CHROMIUM BASE ROUTES_JSON RUNS
const [pwDir, browserPath, base, routesJSON, runs] = process.argv.slice(2);
const { chromium } = require(pwDir);

(async () => {
  const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
  const out = {};
  try {
    for (const r of JSON.parse(routesJSON)) {
      out[r.name] = [];
      for (let i = 0; i < Number(runs); i++) {
        const ctx = await browser.newContext();
        const page = await ctx.newPage();
        await page.goto(base + '/console/' + r.hash, { waitUntil: 'commit' });
        const t = await page.evaluate(() => new Promise((resolve, reject) => {
          const start = Date.now();
          const check = () => {
            const v = document.querySelector('.view[data-state="ready"]');
            if (v && !document.querySelector('.view[data-state="loading"]')) {
              const fcp = performance.getEntriesByName('first-contentful-paint')[0];
              resolve({ ready: performance.now(), fcp: fcp ? fcp.startTime : -1, error: !!v.querySelector('.message-error, [role=alert]') });
            } else if (Date.now() - start > 30000) {
              reject(new Error('not ready in 30 s: ' + location.href + ': ' + document.body.innerText.slice(0, 300)));
            } else {
              requestAnimationFrame(check);
            }
          };
          check();
        }));
        out[r.name].push(t);
        await ctx.close();
      }
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
