// Drives a SMART standalone launch in headless Chromium: opens the app's
// launch URL (argv[2]), fills Ember's login, patient picker and consent
// forms, and prints what the app's redirect page shows (JSON).
// Env: CHROMIUM (browser path), EMBER_USER, EMBER_PASSWORD, EMBER_PATIENT.
const puppeteer = require("puppeteer-core");

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage();
  const log = [];
  page.on("console", (m) => log.push("console: " + m.text()));
  page.on("requestfailed", (r) => log.push("failed: " + r.url() + " " + (r.failure() || {}).errorText));
  try {
    page.setDefaultTimeout(20000);
    await page.goto(process.argv[2], { waitUntil: "networkidle0" });
    await page.waitForSelector("input[name=username]");
    await page.type("input[name=username]", process.env.EMBER_USER);
    await page.type("input[name=password]", process.env.EMBER_PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    await page.waitForSelector("input[name=patient]");
    await page.click(`input[name=patient][value="${process.env.EMBER_PATIENT}"]`);
    await Promise.all([page.waitForNavigation(), page.click("form[method=post] button[type=submit]")]);
    await page.waitForSelector("input[name=scope]");
    await Promise.all([page.waitForNavigation(), page.click("button[name=allow]")]);
    await page.waitForFunction(() => document.getElementById("result") && document.getElementById("result").textContent !== "");
    console.log(await page.$eval("#result", (e) => e.textContent));
  } catch (e) {
    console.error("drive failed:", e.message, "at", page.url());
    console.error((await page.content().catch(() => "")).slice(0, 2000));
    console.error(log.join("\n"));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
