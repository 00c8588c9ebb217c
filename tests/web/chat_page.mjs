// chat_page.mjs URL SHOTDIR [API_KEY] — the chat page of `lfm2c serve` in headless Chromium:
// send, stream, stop (button and Esc), regenerate, edit + resend, reload keeps the conversation,
// markdown and code render (and model text cannot inject HTML), a tool call displays, a thinking
// model's reasoning sits collapsed above the answer (and goes back with the turn), a dropped image
// goes as an image_url part and shows in the message, the API-key
// prompt (asked once, kept), the model picker (every model of /v1/models; another model answers and
// loads on demand; a conversation keeps its model across reloads), the mobile layout. Screenshots
// go to SHOTDIR. Prints "N passed, M failed".
import puppeteer from "puppeteer-core";

const [url, shots, apiKey] = process.argv.slice(2);
let pass = 0, fail = 0;
const ok = (cond, what) => { if (cond) pass++; else { fail++; console.log("FAIL " + what); } };
const exe = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await puppeteer.launch({executablePath: exe, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]});
const timeout = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
try {
  const page = await browser.newPage();
  await page.setViewport({width: 1200, height: 800});
  let prompts = 0;
  page.on("dialog", async (d) => { prompts++; await d.accept(apiKey || ""); });
  page.on("pageerror", (e) => ok(false, "page error: " + e.message));
  await page.goto(url, {waitUntil: "load"});
  await page.waitForSelector("#input");
  ok((await page.title()) === "lfm2c chat", "title");
  if (apiKey) {
    await page.waitForFunction(() => document.getElementById("model").textContent.length > 0, {timeout: 10000});
    ok(prompts === 1, "the API key was asked once (" + prompts + ")");
  }

  // send with Enter; the answer streams in (the content grows over several reads), stats appear
  const n0 = await page.$$eval(".msg", (m) => m.length);
  const setField = (id, v) => page.evaluate((id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event("input")); }, id, v);
  // a long answer (about a second of tokens even with the fast kernels), so that it spans several
  // network reads even when the machine is busy and the browser reads late
  await setField("maxt", "1500");
  await setField("temp", "1.0");
  await page.type("#input", "Hello there");
  await page.keyboard.down("Shift"); await page.keyboard.press("Enter"); await page.keyboard.up("Shift");
  await page.type("#input", "second line");
  ok((await page.$eval("#input", (e) => e.value)) === "Hello there\nsecond line", "Shift+Enter inserts a newline");
  // the answer's text length is recorded at each MutationObserver callback: the page handles all
  // the lines of one network read synchronously, so one callback per read — three or more distinct
  // lengths mean the answer arrived in three or more pieces (streamed, not buffered), however fast
  await page.evaluate(() => {
    window.__lens = new Set();
    new MutationObserver(() => {
      const b = document.querySelector(".msg.assistant .body");
      if (b) window.__lens.add(b.textContent.length);
    }).observe(document.getElementById("log"), {childList: true, subtree: true, characterData: true});
  });
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.user");
  await page.waitForSelector(".msg.assistant .stats", {timeout: 60000});
  let lengths = await page.evaluate(() => window.__lens.size);
  // a random-weight model may end its answer within one network read: then the answer is
  // regenerated (a page that buffers the stream fails every try)
  for (let attempt = 1; attempt < 3 && lengths < 3; attempt++) {
    await page.evaluate(() => { window.__lens = new Set(); });
    await page.click(".msg.assistant .regen");
    await page.waitForFunction(() => document.getElementById("stop").style.display === "none" && document.querySelector(".msg.assistant .stats"), {timeout: 60000});
    lengths = await page.evaluate(() => window.__lens.size);
  }
  ok(lengths >= 3, "the answer streamed in (" + lengths + " distinct lengths seen)");
  const stats = await page.$eval(".msg.assistant .stats", (e) => e.textContent);
  ok(/tokens · [\d.]+ tok\/s · context \d+ \/ \d+/.test(stats), "tokens/s and context use shown: " + stats);
  ok((await page.$$eval(".msg", (m) => m.length)) === n0 + 2, "one user and one assistant message");
  await page.screenshot({path: shots + "/chat-answer.png"});

  // regenerate replaces the last answer (a short one)
  await setField("maxt", "24");
  await page.click(".msg.assistant .regen");
  await page.waitForFunction(() => document.getElementById("stop").style.display === "none" && document.querySelector(".msg.assistant .stats"), {timeout: 60000});
  ok((await page.$$eval(".msg.assistant", (m) => m.length)) === 1, "regenerate keeps one answer");

  // stop: a long answer (no token limit) stopped with the button, then one stopped with Esc
  await setField("maxt", "");
  // (a random-weight model may end an answer on its own before the click: then it is tried again)
  for (const how of ["button", "esc"]) {
    let last = "";
    for (let attempt = 0; attempt < 4 && !last.includes("(stopped)"); attempt++) {
      await page.click("#new");   // a fresh conversation each time: no history to fill the context
      await page.type("#input", "Tell me a long story");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => { const b = document.querySelectorAll(".msg.assistant .body"); return b.length && b[b.length - 1].textContent.length > 0; }, {timeout: 60000});
      if (how === "button") await page.evaluate(() => { const b = document.getElementById("stop"); if (b.style.display !== "none") b.click(); });
      else await page.keyboard.press("Escape");
      await page.waitForFunction(() => document.getElementById("stop").style.display === "none", {timeout: 60000});
      last = await page.$$eval(".msg.assistant", (m) => m[m.length - 1].textContent);
    }
    ok(last.includes("(stopped)"), "stop with the " + how + " ends the answer: " + last.slice(-60));
  }

  // edit the first message and resend: the conversation is cut there
  await setField("maxt", "24");
  await page.click(".msg.user .edit");
  await page.$eval(".msg.user textarea", (t) => { t.value = "Edited question"; });
  await page.click(".msg.user .resend");
  await page.waitForFunction(() => document.getElementById("stop").style.display === "none" && document.querySelectorAll(".msg").length === 2, {timeout: 60000});
  ok((await page.$eval(".msg.user .body", (e) => e.textContent)) === "Edited question", "edit + resend");

  // reload keeps the conversation (localStorage), and the key is not asked again
  const before = await page.$$eval(".msg", (m) => m.map((x) => x.textContent));
  const promptsBefore = prompts;
  await page.reload({waitUntil: "load"});
  await page.waitForSelector(".msg");
  const after = await page.$$eval(".msg", (m) => m.map((x) => x.textContent));
  ok(JSON.stringify(before) === JSON.stringify(after), "reload keeps the conversation");
  ok((await page.$$eval(".conv", (c) => c.length)) >= 1, "the sidebar lists the conversation");
  if (apiKey) ok(prompts === promptsBefore, "the API key is kept across reloads");

  // the model picker: the server's models (the first picked); another one answers (loaded for it),
  // and its conversation keeps it across a reload
  const opts = await page.$$eval("#model option", (o) => o.map((x) => x.value));
  ok(opts.length === 2 && (await page.$eval("#model", (s) => s.value)) === opts[0], "the picker lists the models: " + opts);
  if (opts.length === 2) {
    await page.click("#new");
    await page.select("#model", opts[1]);
    await page.type("#input", "Hello other model");
    await page.keyboard.press("Enter");
    await page.waitForSelector(".msg.assistant .stats", {timeout: 60000});
    const stats = await page.$eval(".msg.assistant .stats", (e) => e.textContent);
    ok(stats.endsWith(" · " + opts[1]), "the other model answered (loaded on demand): " + stats);
    await page.reload({waitUntil: "load"});
    await page.waitForFunction((id) => document.getElementById("model").value === id, {timeout: 10000}, opts[1]);
    ok(true, "the conversation keeps its model across a reload");
    await page.screenshot({path: shots + "/chat-models.png"});
    await page.click(".conv:last-child");
    ok((await page.$eval("#model", (s) => s.value)) === opts[0], "the first conversation switches back to its model");
  }

  // markdown, code highlighting, tool calls and escaping: a canned stream stands in for the model
  await page.setRequestInterception(true);
  const canned = (chunks) => chunks.map((c) => "data: " + JSON.stringify(c) + "\n\n").join("") + "data: [DONE]\n\n";
  let reply = null, lastBody = null;
  page.on("request", (r) => {
    if (r.url().endsWith("/v1/chat/completions")) lastBody = r.postData();
    if (reply && r.url().endsWith("/v1/chat/completions")) r.respond({status: 200, contentType: "text/event-stream", body: reply});
    else r.continue();
  });
  const delta = (d) => ({choices: [{index: 0, delta: d}]});
  reply = canned([delta({role: "assistant", content: "# Title\n\nSome **bold** and `code`.\n\n- one\n- two\n\n"}),
    delta({content: "```python\ndef f(x):\n    return 42  # answer\n```\n<img src=x onerror=alert(1)>"}),
    {choices: [], usage: {prompt_tokens: 10, completion_tokens: 20, total_tokens: 30}}]);
  await page.click("#new");
  if (opts.length === 2) await page.select("#model", opts[1]);
  await page.type("#input", "markdown please");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.assistant .stats");
  ok(await page.$(".msg.assistant strong") !== null, "bold renders");
  ok(await page.$(".msg.assistant ul li") !== null, "list renders");
  ok(await page.$(".msg.assistant pre code .kw") !== null, "code is highlighted");
  ok(await page.$(".msg.assistant img") === null, "model text cannot inject HTML");
  ok(opts.length < 2 || JSON.parse(lastBody || "{}").model === opts[1], "the request names the picked model: " + lastBody);
  await page.screenshot({path: shots + "/chat-markdown.png"});
  reply = canned([delta({role: "assistant", tool_calls: [{index: 0, id: "call_1", type: "function", function: {name: "get_weather", arguments: ""}}]}),
    delta({tool_calls: [{index: 0, function: {arguments: "{\"city\": \"Paris\"}"}}]}),
    {choices: [{index: 0, delta: {}, finish_reason: "tool_calls"}]}]);
  await page.type("#input", "weather?");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.assistant .tool");
  await page.waitForFunction(() => document.getElementById("stop").style.display === "none");
  const tool = await page.$eval(".msg.assistant:last-child .tool", (e) => e.textContent);
  ok(tool.includes("get_weather") && tool.includes("Paris"), "a tool call displays: " + tool);
  await page.screenshot({path: shots + "/chat-tool.png"});
  // a thinking model: reasoning_content deltas, then the answer
  reply = canned([delta({role: "assistant", content: ""}), delta({reasoning_content: "The user asks for the capital. "}),
    delta({reasoning_content: "<b>France</b> -> Paris."}), delta({content: "The capital is **Paris**."}),
    {choices: [{index: 0, delta: {}, finish_reason: "stop"}]}]);
  await page.click("#new");
  await page.type("#input", "capital of France?");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.assistant .stats");
  const th = await page.$eval(".msg.assistant details.think", (d) => ({open: d.open, summary: d.querySelector("summary").textContent,
    text: d.querySelector("div").textContent, shown: d.querySelector("div").checkVisibility()}));
  ok(th.open === false && th.shown === false && th.summary === "Thought", "the thinking is collapsed: " + JSON.stringify(th));
  ok(th.text === "The user asks for the capital. <b>France</b> -> Paris.", "the thinking is plain text: " + th.text);
  ok(await page.$(".msg.assistant details.think b") === null, "the thinking cannot inject HTML");
  const answer = await page.$eval(".msg.assistant .body", (b) => b.querySelector("strong") && b.querySelector("strong").textContent);
  ok(answer === "Paris", "the answer renders below it: " + answer);
  await page.screenshot({path: shots + "/chat-thinking-collapsed.png"});
  await page.click(".msg.assistant details.think summary");
  ok(await page.$eval(".msg.assistant details.think", (d) => d.open && d.querySelector("div").checkVisibility()),
     "a click opens the thinking");
  await page.screenshot({path: shots + "/chat-thinking-open.png"});
  reply = canned([delta({role: "assistant", content: "ok"}), {choices: [{index: 0, delta: {}, finish_reason: "stop"}]}]);
  await page.type("#input", "thanks");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .stats").length === 2);
  const sent = JSON.parse(lastBody || "{}").messages || [];
  ok(sent.some((m) => m.role === "assistant" && m.reasoning_content === "The user asks for the capital. <b>France</b> -> Paris."),
     "the turn's thinking goes back as reasoning_content");

  // an image dropped on the page goes with the next message as an image_url part (a data URL),
  // shown above the message's text; the indicator clears
  await page.evaluate(() => {
    const png = Uint8Array.from(atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([png], "dot.png", {type: "image/png"}));
    document.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
  });
  await page.waitForFunction(() => document.getElementById("attached").style.display !== "none");
  ok(/1 image/.test(await page.$eval("#attached", (e) => e.textContent)), "a dropped image is attached");
  await page.type("#input", "what is this?");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .stats").length === 3);
  const last = (JSON.parse(lastBody || "{}").messages || []).filter((m) => m.role === "user").at(-1) || {};
  ok(Array.isArray(last.content) && last.content[0].type === "image_url" &&
     last.content[0].image_url.url.startsWith("data:image/png;base64,iVBOR") &&
     last.content[1].type === "text" && last.content[1].text === "what is this?", "the image goes as an image_url part: " + JSON.stringify(last).slice(0, 200));
  ok(await page.$$eval(".msg.user", (m) => m.at(-1).querySelectorAll(".imgs img").length === 1), "the image shows in the message");
  ok(await page.$eval("#attached", (e) => e.style.display === "none"), "the indicator clears");
  reply = null;

  // mobile width: the sidebar is hidden until the menu button opens it
  await page.setViewport({width: 390, height: 800});
  const hidden = await page.$eval("#side", (e) => e.getBoundingClientRect().right <= 0);
  ok(hidden, "mobile: the sidebar starts hidden");
  await page.click("#menu");
  await new Promise((r) => setTimeout(r, 300));
  ok(await page.$eval("#side", (e) => e.getBoundingClientRect().left >= 0), "mobile: the menu opens the sidebar");
  await page.screenshot({path: shots + "/chat-mobile.png"});
} catch (e) {
  ok(false, "exception: " + (e.stack || e));
} finally {
  await timeout(browser.close(), 5000, "close").catch(() => {});
}
console.log(pass + " passed, " + fail + " failed");
process.exit(fail ? 1 : 0);
