// no_key.mjs URL — the chat page of `lfm2c serve` without an API key, in headless Chromium: the page
// at URL (http://127.0.0.1:PORT/) lists the models, sends a message and gets an answer (its POSTs
// carry its own origin, which the server takes); the same page loaded under another origin
// (http://localhost:PORT/, a different origin to the browser) submits a cross-site form to URL's
// /v1/chat/completions (text/plain: no CORS preflight) and is answered 403 origin_not_allowed, and
// a fetch of JSON from there is stopped by the preflight (no CORS headers without --cors-origin).
// Prints "N passed, M failed".
import puppeteer from "puppeteer-core";

const [url] = process.argv.slice(2);
let pass = 0, fail = 0;
const ok = (cond, what) => { if (cond) pass++; else { fail++; console.log("FAIL " + what); } };
const browser = await puppeteer.launch({executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]});
try {
  const page = await browser.newPage();
  let prompts = 0;
  page.on("dialog", async (d) => { prompts++; await d.dismiss(); });
  await page.goto(url, {waitUntil: "load"});
  await page.waitForSelector("#input");
  await page.waitForFunction(() => document.getElementById("model").textContent.length > 0, {timeout: 10000});
  await page.evaluate(() => { const e = document.getElementById("maxt"); e.value = "8"; e.dispatchEvent(new Event("input")); });
  await page.type("#input", "Hello there");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.assistant .stats", {timeout: 60000});
  const text = await page.$eval(".msg.assistant .body", (b) => b.textContent);
  ok(text.length > 0 && prompts === 0, `the page's own origin: an answer (${JSON.stringify(text)}), no key asked (${prompts})`);

  const other = url.replace("127.0.0.1", "localhost");
  await page.goto(other, {waitUntil: "load"});
  const target = new URL("/v1/chat/completions", url).href;
  const fetched = await page.evaluate(async (t) => {
    try {
      const r = await fetch(t, {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({messages: [{role: "user", content: "hi"}], max_tokens: 2})});
      return "answered " + r.status;
    } catch (e) { return "stopped"; }
  }, target);
  ok(fetched === "stopped", `a JSON fetch from another origin is stopped by the preflight (${fetched})`);
  const [nav] = await Promise.all([
    page.waitForNavigation({timeout: 20000}),
    page.evaluate((t) => {
      const f = document.createElement("form");
      f.method = "POST"; f.enctype = "text/plain"; f.action = t;
      const i = document.createElement("input");
      i.name = '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"x":"';
      i.value = '"}';
      f.appendChild(i);
      document.body.appendChild(f);
      f.submit();
    }, target),
  ]);
  const body = await page.evaluate(() => document.body.innerText);
  ok(nav && nav.status() === 403 && body.includes("origin_not_allowed"),
     `a cross-site form post: ${nav && nav.status()} ${body.slice(0, 200)}`);
} catch (e) {
  ok(false, "browser: " + e.message);
} finally {
  await browser.close();
}
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
