// chat_page.mjs URL SHOTDIR [API_KEY [AUDIO_URL]] — the chat page of `lfm2c serve` in headless
// Chromium: send, stream, stop (button and Esc), regenerate, edit + resend, reload keeps the
// conversation, markdown and code render (and model text cannot inject HTML), a tool call
// displays, a thinking model's reasoning sits collapsed above the answer (and goes back with the
// turn), a dropped image and one picked with the 📎 button go as image_url parts and show in the
// message (chips with ✕ before), a text model offers no audio (no 🎤, the picker takes images, a
// clip is refused with a note), the API-key prompt (asked once, kept), the model picker (every
// model of /v1/models; another model answers and loads on demand; a conversation keeps its model
// across reloads), the mobile layout. AUDIO_URL: a server whose first model hears (LFM2-Audio with
// its mmproj) and whose second does not: a WAV picked with 📎 goes as it is and a WebM clip
// converted to WAV, both input_audio parts the model answers (regenerate and edit send them again), a
// recording from Chromium's fake microphone (about a second) goes as a WAV of that length, and
// the text model's 400 shows in the answer; a full localStorage keeps the conversations without
// their large attachments. Screenshots go to SHOTDIR. Prints "N passed, M failed".
import puppeteer from "puppeteer-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, shots, apiKey, audioUrl] = process.argv.slice(2);
let pass = 0, fail = 0;
const ok = (cond, what) => { if (cond) pass++; else { fail++; console.log("FAIL " + what); } };
const exe = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await puppeteer.launch({executablePath: exe, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]});
const timeout = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
// the files picked with the 📎 button: a 1x1 PNG, a 1.5 s 440 Hz WAV (22.05 kHz stereo: sent as it is)
const files = fs.mkdtempSync(path.join(os.tmpdir(), "chat-page-"));
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
const pngPath = path.join(files, "dot.png"), png2Path = path.join(files, "dot2.png"), wavPath = path.join(files, "tone.wav");
fs.writeFileSync(pngPath, Buffer.from(PNG, "base64"));
fs.writeFileSync(png2Path, Buffer.from(PNG, "base64"));
{
  const rate = 22050, n = Math.round(1.5 * rate), w = Buffer.alloc(44 + 4 * n);
  w.write("RIFF", 0); w.writeUInt32LE(36 + 4 * n, 4); w.write("WAVEfmt ", 8); w.writeUInt32LE(16, 16); w.writeUInt16LE(1, 20);
  w.writeUInt16LE(2, 22); w.writeUInt32LE(rate, 24); w.writeUInt32LE(4 * rate, 28); w.writeUInt16LE(4, 32); w.writeUInt16LE(16, 34);
  w.write("data", 36); w.writeUInt32LE(4 * n, 40);
  for (let i = 0; i < n; i++) for (let c = 0; c < 2; c++) w.writeInt16LE(Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / rate)), 44 + 4 * i + 2 * c);
  fs.writeFileSync(wavPath, w);
}
// the page's own policy must let everything it does run (the capture worklet, the clips' players)
const policed = (page) => page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) ok(false, "blocked by the page's policy: " + m.text()); });

// The page against a server whose first model hears and whose second does not (AUDIO_URL).
async function hearing(audioUrl) {
  const page = await browser.newPage();
  policed(page);
  page.on("pageerror", (e) => ok(false, "page error (audio): " + e.message));
  await page.setViewport({width: 1200, height: 800});
  await page.goto(audioUrl, {waitUntil: "load"});
  await page.waitForFunction(() => document.getElementById("model").textContent.length > 0, {timeout: 10000});
  const ids = await page.$$eval("#model option", (o) => o.map((x) => x.value));
  const arch = await page.evaluate(() => models.map((m) => m.architecture.input_modalities.join("+")));
  ok(arch.join() === "text+audio,text", "/v1/models: the audio model takes text+audio, the text model text: " + arch);
  ok(await page.$eval("#mic", (e) => e.style.display !== "none"), "a model that hears: the microphone button");
  const accept = await page.$eval("#file", (e) => e.accept);
  ok(/audio\/\*/.test(accept) && accept.includes(".flac"), "a model that hears: the picker takes audio: " + accept);
  await page.evaluate(() => {   /* the bodies the page posts, as sent */
    const f = window.fetch.bind(window); window.__sent = [];
    window.fetch = (u, o) => { if (String(u).includes("/v1/chat/completions")) window.__sent.push(JSON.parse(o.body)); return f(u, o); };
    const e = document.getElementById("maxt"); e.value = "8"; e.dispatchEvent(new Event("input"));
  });
  const lastUser = () => page.evaluate(() => window.__sent.at(-1).messages.filter((m) => m.role === "user").at(-1).content);
  const answered = (n) => page.waitForFunction((n) => document.querySelectorAll(".msg.assistant .stats").length === n &&
    document.getElementById("stop").style.display === "none", {timeout: 60000}, n);
  const b64len = (d) => d.length / 4 * 3 - (d.endsWith("==") ? 2 : d.endsWith("=") ? 1 : 0);

  // a WAV picked with 📎 goes as it is; a WebM clip (recorded here from an oscillator: no format the
  // server reads) is decoded by the page and goes as a 16 kHz WAV; the model answers both
  await (await page.$("#file")).uploadFile(wavPath);
  await page.waitForFunction(() => /tone\.wav · 0:01/.test(document.getElementById("chips").textContent), {timeout: 10000});
  ok(true, "a picked WAV is a chip with its name and length");
  await page.evaluate(async () => {
    const ctx = new AudioContext(), osc = ctx.createOscillator(), dst = ctx.createMediaStreamDestination();
    osc.connect(dst); osc.start();
    const mr = new MediaRecorder(dst.stream), parts = [];
    mr.ondataavailable = (e) => parts.push(e.data);
    const done = new Promise((r) => { mr.onstop = r; });
    mr.start(); await new Promise((r) => setTimeout(r, 700)); mr.stop(); await done; ctx.close();
    const dt = new DataTransfer();
    dt.items.add(new File(parts, "tone.webm", {type: "audio/webm"}));
    document.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
  });
  await page.waitForFunction(() => document.querySelectorAll("#chips .chip").length === 2, {timeout: 10000});
  ok(true, "a dropped WebM clip is converted and attached");
  await page.screenshot({path: shots + "/chat-attach-audio.png"});
  await page.type("#input", "what is said?");
  await page.keyboard.press("Enter");
  await answered(1);
  let parts = await lastUser();
  const wav64 = fs.readFileSync(wavPath).toString("base64");
  ok(parts.length === 3 && parts[0].type === "input_audio" && parts[0].input_audio.format === "wav" && parts[0].input_audio.data === wav64,
     "the WAV goes as an input_audio part, as it is: " + JSON.stringify(parts).slice(0, 160));
  const conv = parts[1] && parts[1].input_audio || {}, convBytes = b64len(conv.data || "");
  ok(parts[1] && parts[1].type === "input_audio" && conv.format === "wav" && (conv.data || "").startsWith("UklGR") &&
     convBytes > 44 + 2 * 16000 * 0.3 && convBytes < 44 + 2 * 16000 * 3,
     "the WebM clip goes as a 16 kHz WAV (" + convBytes + " bytes)");
  ok(parts[2] && parts[2].type === "text" && parts[2].text === "what is said?", "then the text");
  ok(await page.$(".msg.assistant .err") === null, "the model that hears answered: " +
     await page.$eval(".msg.assistant", (e) => e.textContent));
  await page.waitForFunction(() => Array.from(document.querySelectorAll(".msg.user .atts audio")).every((a) => a.readyState >= 1), {timeout: 10000});
  const durs = await page.$$eval(".msg.user .atts audio", (a) => a.map((x) => x.duration));
  ok(durs.length === 2 && Math.abs(durs[0] - 1.5) < 0.05, "the clips play in the message: " + durs);
  await page.click(".msg.assistant .regen");
  await answered(1);
  parts = await lastUser();
  ok(parts.length === 3 && parts[0].input_audio.data === wav64 && parts[1].input_audio.data === conv.data, "regenerate sends the clips again");
  await page.click(".msg.user .edit");
  await page.$eval(".msg.user textarea", (t) => { t.value = "and now?"; });
  await page.click(".msg.user .resend");
  await answered(1);
  parts = await lastUser();
  ok(parts.length === 3 && parts[0].input_audio.data === wav64 && parts[1].input_audio.data === conv.data && parts[2].text === "and now?",
     "edit + resend sends the clips with the new text");
  ok(await page.$$eval(".msg.user .atts audio", (a) => a.length) === 2, "the edited message still shows its clips");

  // the microphone (Chromium's fake one): about a second recorded, shown while recording, then a
  // chip with a player; it goes as a 16 kHz WAV of that length
  await page.click("#new");
  await page.click("#mic");
  await page.waitForFunction(() => /^■ 0:01$/.test(document.getElementById("mic").textContent), {timeout: 10000});
  const pressed = await page.$eval("#mic", (e) => e.getAttribute("aria-pressed") + " " + e.getAttribute("aria-label"));
  ok(pressed === "true Stop recording", "recording: the button stops it and shows the time: " + pressed);
  const capture = await page.evaluate(() => rec.node.constructor.name);
  ok(capture === "AudioWorkletNode", "the capture is the page's AudioWorklet (its policy lets the blob: module load): " + capture);
  await page.click("#mic");
  await page.waitForFunction(() => /recording · microphone · 0:0[1-2]/.test(document.getElementById("chips").textContent), {timeout: 10000});
  ok(await page.$eval("#mic", (e) => e.getAttribute("aria-label") === "Record from the microphone" && e.querySelector("svg") !== null),
     "stopped: the button records again");
  await page.click("#chips .chip .play");
  await page.waitForFunction(() => document.querySelector("#chips .chip .play").textContent === "■", {timeout: 5000});
  ok(true, "the recording's chip plays it");
  await page.screenshot({path: shots + "/chat-recording.png"});
  await page.click("#send");
  await answered(1);
  parts = await lastUser();
  const mic = parts[0] && parts[0].input_audio || {}, micBytes = b64len(mic.data || "");
  const head = Buffer.from((mic.data || "").slice(0, 60), "base64");
  ok(mic.format === "wav" && head.toString("latin1", 0, 4) === "RIFF" && head.readUInt32LE(24) === 16000 && head.readUInt16LE(22) === 1,
     "the recording goes as a mono 16 kHz WAV");
  ok(micBytes > 44 + 2 * 16000 * 0.9 && micBytes < 44 + 2 * 16000 * 2.5, "the recording is about as long as recorded: " +
     ((micBytes - 44) / 32000).toFixed(2) + " s");
  ok(await page.$(".msg.assistant .err") === null, "the model answered the recording");

  // a model that does not hear: no microphone; audio attached before the switch is refused by the
  // server, and the 400 shows in the answer
  await page.click("#new");
  await (await page.$("#file")).uploadFile(wavPath);
  await page.waitForFunction(() => document.querySelectorAll("#chips .chip").length === 1, {timeout: 10000});
  await page.select("#model", ids[1]);
  ok(await page.$eval("#mic", (e) => e.style.display === "none"), "the text model: no microphone button");
  ok(/does not hear/.test(await page.$eval("#note", (e) => e.textContent)), "the text model: the attached clip is flagged");
  await page.type("#input", "hello?");
  await page.keyboard.press("Enter");
  await answered(1);
  const err = await page.$eval(".msg.assistant", (e) => (e.querySelector(".err") || {}).textContent || "");
  ok(/^HTTP 400: .*cannot hear/.test(err), "the text model's 400 shows: " + err);
  await page.screenshot({path: shots + "/chat-audio-refused.png"});

  // a full localStorage (made to refuse what is 50 KB past the conversations kept now): the
  // conversations are saved without their large attachments, which a reload says were not kept
  await page.evaluate(() => {
    const set = Storage.prototype.setItem, cap = localStorage.getItem("lfm2c.convs").length + 50000;
    Storage.prototype.setItem = function (k, v) { if (String(v).length > cap) throw new DOMException("full", "QuotaExceededError"); return set.call(this, k, v); };
  });
  await page.click("#new");
  await page.select("#model", ids[0]);
  await (await page.$("#file")).uploadFile(wavPath);
  await page.waitForFunction(() => document.querySelectorAll("#chips .chip").length === 1, {timeout: 10000});
  await page.type("#input", "kept?");
  await page.keyboard.press("Enter");
  await answered(1);
  await page.reload({waitUntil: "load"});
  await page.waitForSelector(".msg.user");
  const kept = await page.$$eval(".msg.user", (m) => m.at(-1).textContent);
  ok(kept.includes("kept?") && /tone\.wav.*not kept/.test(kept), "storage full: the message kept, its clip not: " + kept);
  await page.close();
}

try {
  const page = await browser.newPage();
  policed(page);
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
  await page.waitForFunction(() => document.getElementById("model").options.length > 0, {timeout: 10000});   /* (after the reload) */
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
  await page.waitForFunction(() => document.getElementById("chips").style.display !== "none");
  ok(/^image · dot\.png/.test(await page.$eval("#chips", (e) => e.textContent)), "a dropped image is a chip");
  await page.type("#input", "what is this?");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .stats").length === 3);
  const last = (JSON.parse(lastBody || "{}").messages || []).filter((m) => m.role === "user").at(-1) || {};
  ok(Array.isArray(last.content) && last.content[0].type === "image_url" &&
     last.content[0].image_url.url.startsWith("data:image/png;base64,iVBOR") &&
     last.content[1].type === "text" && last.content[1].text === "what is this?", "the image goes as an image_url part: " + JSON.stringify(last).slice(0, 200));
  ok(await page.$$eval(".msg.user", (m) => m.at(-1).querySelectorAll(".atts img").length === 1), "the image shows in the message");
  ok(await page.$eval("#chips", (e) => e.style.display === "none"), "the chips clear");

  // the 📎 button opens a file picker; a text model's takes images only, offers no microphone, and
  // refuses a clip with a note; picked images are chips (✕ removes one) and go as image_url parts
  const arch = await page.evaluate(() => models.map((m) => m.architecture && m.architecture.input_modalities.join("+")));
  ok(arch.length > 0 && arch.every((a) => a === "text"), "/v1/models: each text model takes text only: " + arch);
  ok(await page.$eval("#mic", (e) => e.style.display === "none"), "a text model: no microphone button");
  const accept = await page.$eval("#file", (e) => e.accept);
  ok(accept === "image/*", "a text model: the picker takes images: " + accept);
  const [chooser] = await Promise.all([page.waitForFileChooser({timeout: 5000}), page.click("#attach")]);
  await chooser.accept([pngPath, wavPath, png2Path]);
  await page.waitForFunction(() => document.querySelectorAll("#chips .chip").length === 2 && /does not hear/.test(document.getElementById("note").textContent));
  ok(true, "the 📎 button's picker: two image chips, the clip refused with a note");
  await page.click("#chips .chip:last-child .rm");
  ok((await page.$$eval("#chips .chip", (c) => c.map((x) => x.textContent))).join() === "image · dot.png✕", "✕ removes a chip");
  await page.screenshot({path: shots + "/chat-attach-text.png"});
  await page.type("#input", "and this?");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .stats").length === 4);
  const picked = (JSON.parse(lastBody || "{}").messages || []).filter((m) => m.role === "user").at(-1) || {};
  ok(Array.isArray(picked.content) && picked.content.length === 2 && picked.content[0].type === "image_url" &&
     picked.content[0].image_url.url === "data:image/png;base64," + PNG && picked.content[1].text === "and this?",
     "a picked image goes as an image_url part: " + JSON.stringify(picked).slice(0, 200));
  reply = null;

  // mobile width: the sidebar is hidden until the menu button opens it
  await page.setViewport({width: 390, height: 800});
  const hidden = await page.$eval("#side", (e) => e.getBoundingClientRect().right <= 0);
  ok(hidden, "mobile: the sidebar starts hidden");
  await page.click("#menu");
  await new Promise((r) => setTimeout(r, 300));
  ok(await page.$eval("#side", (e) => e.getBoundingClientRect().left >= 0), "mobile: the menu opens the sidebar");
  await page.screenshot({path: shots + "/chat-mobile.png"});
  if (audioUrl) await hearing(audioUrl);
} catch (e) {
  ok(false, "exception: " + (e.stack || e));
} finally {
  await timeout(browser.close(), 5000, "close").catch(() => {});
  fs.rmSync(files, {recursive: true, force: true});
}
console.log(pass + " passed, " + fail + " failed");
process.exit(fail ? 1 : 0);
