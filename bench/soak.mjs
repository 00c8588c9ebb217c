// soak.mjs — bounded soak test of `lfm2c serve` on loopback: mixed, partly hostile traffic from
// many concurrent clients for a fixed time, then checks that the server is still whole.
//
//   node bench/soak.mjs --lfm2c build-asan/lfm2c --model tests/data/lfm2-tiny-moe-f32.gguf \
//        [--duration 1800] [--clients 32] [--np 8] [--queue 64] [--max-requests 10000000]
//        [--warmup 120] [--seed 1] [--json out.json] [--log server.log] [--skip KIND,...]
//
// Starts the server itself (port 0, 127.0.0.1, --metrics, an API key), then each client loops
// over a weighted mix until --duration seconds or --max-requests requests in all:
//   chat (plain / streamed), streams cancelled midway, tool calls (auto / required), json_schema
//   and json_object answers, logprobs (chat and legacy completions), n choices, prompt arrays with
//   echo and prompt logprobs, tools with a response format, /tokenize + /detokenize,
//   invalid requests (bad JSON, bad fields, wrong key, unknown route, wrong method, too large),
//   slow clients (headers and body trickled in pieces, a stream read slowly), half-closed
//   clients, abandoned requests (a long generation, plain or streamed, sent and its connection
//   closed before any answer), malformed HTTP on a raw socket (both Content-Length and
//   Transfer-Encoding, a bad request line, a bad chunk size, a body cut short, bytes that are not
//   UTF-8 in the JSON and in an echoed name), /health and /metrics.
// Reports requests by kind and status, 5xx (zero is required except 503, which the server
// documents for a full queue, a busy tokenizer or its request memory; 503s are counted too),
// unexpected transport errors, p50/p99 latency of the successful requests, the server's RSS (VmRSS) after the warm-up and at the end, and checks
// that every slot is free and no connection is left open at the end, then stops the server with
// SIGTERM and checks its exit (and, for a sanitizer build, that its log has no error report).
// No dependencies: fetch + node:net.
import { spawn } from 'node:child_process';
import { readFileSync, createWriteStream, writeFileSync } from 'node:fs';
import net from 'node:net';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => {
  if (x.startsWith('--')) a.push([x.slice(2), all[i + 1]]);
  return a;
}, []));
const lfm2c = args.lfm2c || 'build/lfm2c';
const modelPath = args.model || 'tests/data/lfm2-tiny-moe-f32.gguf';
const duration = Number(args.duration || 60) * 1000;
const nClients = Number(args.clients || 32);
const maxRequests = Number(args['max-requests'] || 1e7);
const warmup = Math.min(Number(args.warmup || 120) * 1000, duration / 4);
const KEY = 'soak-key';
let seed = Number(args.seed || 1) >>> 0;
const rand = () => { // xorshift32: the same mix for the same seed
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
};
const pick = (a) => a[Math.floor(rand() * a.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- server ---------------------------------------------------------------------------------
function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(lfm2c, ['serve', '-m', modelPath, '--port', '0', '-np', String(args.np || 8), '-c', '2048',
      '--queue', String(args.queue || 64), '--metrics', '--api-key', KEY, '--alias', 'soak', '--max-body', '1048576'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = createWriteStream(args.log || '/dev/null');
    let errText = '';
    p.stderr.on('data', (d) => { log.write(d); if (errText.length < 1 << 20) errText += d; });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) resolve({ proc: p, port: Number(m[1]), base: `http://127.0.0.1:${m[1]}`, stderr: () => errText, log });
    });
    p.on('exit', (code) => reject(new Error(`server exited (${code}): ${errText.slice(-2000)}`)));
  });
}
const rssMB = (pid) => {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch { return NaN; } // the server is gone: reported by the checks
};

// ---- bookkeeping ------------------------------------------------------------------------------
const stats = { byKind: {}, byStatus: {}, errors: {}, latencies: [], badAnswers: {}, total: 0 };
function record(kind, status, ms, ok) {
  stats.total++;
  const k = (stats.byKind[kind] ||= {});
  k[status] = (k[status] || 0) + 1;
  stats.byStatus[status] = (stats.byStatus[status] || 0) + 1;
  if (ok && typeof status === 'number' && status < 300) stats.latencies.push(ms);
}
const bad = (kind, what) => { const k = `${kind}: ${what}`.slice(0, 200); stats.badAnswers[k] = (stats.badAnswers[k] || 0) + 1; };
const err = (kind, e) => { const k = `${kind}: ${e?.cause?.code || e?.code || e?.name || e}`.slice(0, 200); stats.errors[k] = (stats.errors[k] || 0) + 1; };

// ---- traffic ----------------------------------------------------------------------------------
const topics = ['the sea', 'a robot', 'mountains', 'tea', 'a small town', 'the moon', 'rain', 'a train'];
const userMsg = () => `Tell me about ${pick(topics)}. ` + 'Please be brief. '.repeat(1 + Math.floor(rand() * 4));
const weather = { type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city'] } } };
const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } },
  required: ['name', 'age'], additionalProperties: false };

async function post(base, path, body, { key = KEY, signal, raw } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  return fetch(base + path, { method: 'POST', headers, body: raw ?? JSON.stringify(body), signal });
}

// Reads an SSE stream; returns {events, done}. stopAfter: abort after that many events.
async function readSSE(res, ctl, stopAfter, slowMs) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', events = 0, done = false;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (ev.startsWith('data: [DONE]')) done = true;
      else if (ev.startsWith('data: ')) events++;
    }
    if (stopAfter && events >= stopAfter) { ctl.abort(); return { events, done, aborted: true }; }
    if (slowMs) await sleep(slowMs);
  }
  return { events, done };
}

// The final answer of a raw exchange: interim 1xx answers before it (the server writes "102
// Processing" to a client that half-closed, to tell a closed one) are skipped.
const finalAnswer = (got) => got.replace(/^(HTTP\/1\.1 1\d\d[^\r]*\r\n(?:[^\r]+\r\n)*\r\n)+/, '');

// One raw exchange: writes `req` (a string or Buffer), optionally closes at once; resolves with
// the status of the answer, 'closed' when the server closed without one, 'abandoned' when we left.
function rawExchange(port, req, { abandonAfterMs = -1 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '', left = false;
    s.setTimeout(60000, () => { s.destroy(); reject(new Error('raw client timed out')); });
    s.on('data', (d) => { got += d; });
    s.on('error', (e) => { if (!left && !got) reject(e); });
    s.on('close', () => {
      if (left) return resolve('abandoned');
      const m = finalAnswer(got).match(/^HTTP\/1\.[01] (\d+)/);
      resolve(m ? Number(m[1]) : 'closed');
    });
    s.on('connect', () => {
      s.write(req);
      if (abandonAfterMs >= 0) setTimeout(() => { left = true; s.destroy(); }, abandonAfterMs);
    });
  });
}
const httpReq = (path, body, extra = '') => {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${b.length}\r\n${extra}\r\n`), b]);
};

const kinds = {
  // a long generation whose client leaves before the answer: the server must cancel it
  abandon(base, port) {
    const body = JSON.stringify({ model: 'soak', messages: [{ role: 'user', content: userMsg() }], max_tokens: 400,
      logit_bias: { 7: -100, 2: -100 }, stream: rand() < 0.4 });
    return rawExchange(port, httpReq('/v1/chat/completions', body), { abandonAfterMs: Math.floor(rand() * 300) });
  },
  // malformed HTTP: each must get a 4xx (or, where the framing is unreadable, a closed connection)
  async malformed(base, port) {
    const which = Math.floor(rand() * 6);
    const ok = (st, allowClosed) => {
      if (!((typeof st === 'number' && st >= 400 && st < 500) || (allowClosed && st === 'closed'))) bad('malformed', `case ${which} answered ${st}`);
      return st;
    };
    const chat = JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    if (which === 0) return ok(await rawExchange(port, httpReq('/v1/chat/completions', chat, 'Transfer-Encoding: chunked\r\n')), true);
    if (which === 1) return ok(await rawExchange(port, 'GARBAGE\r\n\r\n'), true);
    if (which === 2) {
      return ok(await rawExchange(port, `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n` +
        'Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'), true);
    }
    if (which === 3) { // a body cut short, then the client leaves
      const b = httpReq('/v1/chat/completions', chat);
      return rawExchange(port, b.subarray(0, b.length - 5), { abandonAfterMs: 50 });
    }
    if (which === 4) { // bytes that are not UTF-8 inside the JSON
      return ok(await rawExchange(port, httpReq('/v1/chat/completions', Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'),
        Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}]}')]))), false);
    }
    // a model name cut inside a UTF-8 character when the error message quotes it
    return ok(await rawExchange(port, httpReq('/v1/chat/completions', JSON.stringify({ model: 'a'.repeat(199) + '\u00e9',
      messages: [{ role: 'user', content: 'x' }] }) + '')), false);
  },
  async chat(base) {
    const res = await post(base, '/v1/chat/completions', { model: 'soak', messages: [{ role: 'user', content: userMsg() }],
      max_tokens: 8 + Math.floor(rand() * 56), temperature: rand() });
    const j = await res.json();
    if (res.status === 200 && typeof j.choices?.[0]?.message?.content !== 'string') bad('chat', 'no content');
    return res.status;
  },
  async stream(base) {
    const ctl = new AbortController();
    const res = await post(base, '/v1/chat/completions', { model: 'soak', messages: [{ role: 'user', content: userMsg() }],
      max_tokens: 8 + Math.floor(rand() * 56), stream: true, stream_options: { include_usage: true } }, { signal: ctl.signal });
    if (res.status !== 200) { await res.text(); return res.status; }
    const r = await readSSE(res, ctl);
    if (!r.done) bad('stream', 'no [DONE]');
    return res.status;
  },
  async stream_cancel(base) {
    const ctl = new AbortController();
    const res = await post(base, '/v1/chat/completions', { model: 'soak', messages: [{ role: 'user', content: userMsg() }],
      max_tokens: 400, stream: true, logit_bias: { 7: -100, 2: -100 } }, { signal: ctl.signal });
    if (res.status !== 200) { await res.text(); return res.status; }
    try { await readSSE(res, ctl, 2 + Math.floor(rand() * 10)); } catch (e) { if (e.name !== 'AbortError') throw e; }
    return 'cancelled';
  },
  async tools(base) {
    const choice = pick(['auto', 'required', { type: 'function', function: { name: 'get_weather' } }]);
    const res = await post(base, '/v1/chat/completions', { model: 'soak', messages: [{ role: 'user', content: `Weather in ${pick(topics)}?` }],
      tools: [weather], tool_choice: choice, max_tokens: 64, stream: rand() < 0.3 });
    const t = await res.text();
    if (res.status >= 500) bad('tools', `${res.status} ${t.slice(0, 120)}`);
    if (res.status === 200 && !t.startsWith('data:')) {
      const c = JSON.parse(t).choices[0];
      if (c.finish_reason === 'tool_calls') {
        for (const tc of c.message.tool_calls || []) {
          try { JSON.parse(tc.function.arguments); } catch { bad('tools', 'arguments not JSON'); }
        }
      } else if (choice !== 'auto' && c.finish_reason === 'stop') bad('tools', `forced call ended with ${c.finish_reason}`);
    }
    return res.status;
  },
  async schema(base) {
    const rf = rand() < 0.7 ? { type: 'json_schema', json_schema: { name: 'p', schema } } : { type: 'json_object' };
    const res = await post(base, '/v1/chat/completions', { model: 'soak', messages: [{ role: 'user', content: 'A person as JSON.' }],
      response_format: rf, max_tokens: 96 });
    const j = await res.json();
    if (res.status >= 500) bad('schema', `${res.status} ${JSON.stringify(j).slice(0, 120)}`);
    const c = j.choices?.[0];
    if (res.status === 200 && c.finish_reason === 'stop') {
      try { JSON.parse(c.message.content); } catch { bad('schema', 'content not JSON'); }
    }
    return res.status;
  },
  async logprobs(base) {
    const chat = rand() < 0.6;
    const body = chat
      ? { model: 'soak', messages: [{ role: 'user', content: userMsg() }], logprobs: true, top_logprobs: Math.floor(rand() * 6), max_tokens: 24, stream: rand() < 0.3 }
      : { model: 'soak', prompt: userMsg(), logprobs: Math.floor(rand() * 6), max_tokens: 24 };
    const res = await post(base, chat ? '/v1/chat/completions' : '/v1/completions', body);
    const t = await res.text();
    if (res.status === 200 && !body.stream) {
      const j = JSON.parse(t);
      const n = j.usage.completion_tokens;
      const got = chat ? j.choices[0].logprobs?.content?.length : j.choices[0].logprobs?.tokens?.length;
      if (got !== n) bad('logprobs', `${got} entries for ${n} tokens`);
    }
    return res.status;
  },
  async choices(base) { // n choices (shared prefill), prompt arrays + echo + prompt logprobs, tools with a response format
    const which = Math.floor(rand() * 3);
    let res, body;
    if (which === 0) {
      body = { model: 'soak', messages: [{ role: 'user', content: userMsg() }], n: 1 + Math.floor(rand() * 6), max_tokens: 16,
        temperature: 0.8, stream: rand() < 0.4 };
      res = await post(base, '/v1/chat/completions', body);
    } else if (which === 1) {
      body = { model: 'soak', prompt: [userMsg(), userMsg()], n: 1 + Math.floor(rand() * 3), echo: true, logprobs: Math.floor(rand() * 3),
        max_tokens: Math.floor(rand() * 8), stream: rand() < 0.3 };
      res = await post(base, '/v1/completions', body);
    } else {
      body = { model: 'soak', messages: [{ role: 'user', content: 'Weather or JSON?' }], tools: [weather],
        tool_choice: pick(['auto', 'required', 'none']), response_format: { type: 'json_schema', json_schema: { name: 'p', schema } }, max_tokens: 64 };
      res = await post(base, '/v1/chat/completions', body);
    }
    const t = await res.text();
    if (res.status >= 500) bad('choices', `${res.status} ${t.slice(0, 120)}`);
    if (res.status === 200 && !body.stream) {
      const j = JSON.parse(t);
      const want = which === 0 ? body.n : which === 1 ? 2 * body.n : 1;
      if (j.choices.length !== want) bad('choices', `${j.choices.length} choices, want ${want}`);
    }
    return res.status;
  },
  async tokenize(base) {
    const res = await post(base, '/tokenize', { content: userMsg().repeat(1 + Math.floor(rand() * 50)) });
    const j = await res.json();
    if (res.status !== 200) return res.status;
    const res2 = await post(base, '/detokenize', { tokens: j.tokens });
    await res2.text();
    return res2.status;
  },
  async invalid(base) {
    const which = Math.floor(rand() * 8);
    let res;
    if (which === 0) res = await post(base, '/v1/chat/completions', null, { raw: '{"messages": [' });
    else if (which === 1) res = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], temperature: 'hot' });
    else if (which === 2) res = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }, { key: 'wrong' });
    else if (which === 3) res = await fetch(base + '/v1/nothing', { headers: { Authorization: `Bearer ${KEY}` } });
    else if (which === 4) res = await fetch(base + '/v1/chat/completions', { headers: { Authorization: `Bearer ${KEY}` } });
    else if (which === 5) { // refused from its Content-Length: 413 and the connection closed unread,
      try { // so the client may see the 413 or a reset while it still sends (both are fine)
        res = await post(base, '/v1/chat/completions', null, { raw: 'x'.repeat(2 << 20) });
      } catch (e) { return 'reset (413 body unread)'; }
    }
    else if (which === 6) res = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: -3 });
    else res = await post(base, '/detokenize', { tokens: [1, 2, 'x'] });
    await res.text().catch(() => {});
    if (res.status < 400 || res.status >= 500) bad('invalid', `answered ${res.status}`);
    return res.status;
  },
  async health(base) {
    const res = await fetch(base + (rand() < 0.5 ? '/health' : '/metrics'), { headers: { Authorization: `Bearer ${KEY}` } });
    await res.text();
    return res.status;
  },
  // A slow client on a raw socket: headers and body trickled in pieces, the answer read slowly,
  // or the request half-closed after sending.
  slow(base, port) {
    const body = JSON.stringify({ model: 'soak', messages: [{ role: 'user', content: userMsg() }], max_tokens: 16, stream: rand() < 0.5 });
    const req = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
    const halfClose = rand() < 0.3;
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.setTimeout(120000, () => { s.destroy(); reject(new Error('slow client timed out')); });
      s.on('data', (d) => { got += d; s.pause(); setTimeout(() => s.resume(), 20); });
      s.on('error', reject);
      s.on('close', () => {
        const m = finalAnswer(got).match(/^HTTP\/1\.1 (\d+)/);
        if (!m) return reject(new Error('slow client: no answer'));
        if (m[1] === '200' && !/\r\n\r\n/.test(got)) bad('slow', 'truncated');
        resolve(Number(m[1]));
      });
      s.on('connect', async () => {
        const pieces = 6 + Math.floor(rand() * 6);
        const step = Math.ceil(req.length / pieces);
        for (let i = 0; i < req.length; i += step) {
          s.write(req.slice(i, i + step));
          await sleep(50 + rand() * 150);
        }
        if (halfClose) s.end();
      });
    });
  },
};
const skip = new Set((args.skip || '').split(',').filter(Boolean)); // --skip logprobs,slow: leave kinds out
const mix = [['chat', 16], ['stream', 14], ['stream_cancel', 10], ['tools', 12], ['schema', 10], ['logprobs', 10],
  ['choices', 8], ['tokenize', 6], ['invalid', 10], ['health', 4], ['slow', 8], ['abandon', 8], ['malformed', 6]]
  .filter(([k]) => !skip.has(k));
const mixTotal = mix.reduce((a, [, w]) => a + w, 0);
const pickKind = () => { let x = rand() * mixTotal; for (const [k, w] of mix) { if ((x -= w) < 0) return k; } return 'chat'; };

// ---- run ----------------------------------------------------------------------------------------
const srv = await startServer();
const t0 = Date.now();
let rssWarm = NaN, stop = false;
const rssSamples = [];
const sampler = setInterval(() => {
  const t = Date.now() - t0;
  const r = rssMB(srv.proc.pid);
  rssSamples.push([Math.round(t / 1000), Math.round(r * 10) / 10]);
  if (Number.isNaN(rssWarm) && t >= warmup) rssWarm = r;
}, 5000);
async function client() {
  while (!stop) {
    if (Date.now() - t0 >= duration || stats.total >= maxRequests) { stop = true; break; }
    const kind = pickKind();
    const t = performance.now();
    try {
      const st = await Promise.race([kinds[kind](srv.base, srv.port),
        sleep(180000).then(() => { throw new Error('request took over 180 s'); })]);
      record(kind, st, performance.now() - t, true);
    } catch (e) {
      record(kind, 'error', performance.now() - t, false);
      err(kind, e);
    }
  }
}
srv.proc.on('exit', (code, sig) => { console.error(`soak: the server died (${code ?? sig}); stopping`); stop = true; });
console.error(`soak: ${nClients} clients for ${duration / 1000} s against ${lfm2c} (pid ${srv.proc.pid}), warm-up ${warmup / 1000} s`);
const progress = setInterval(() => console.error(`  ${Math.round((Date.now() - t0) / 1000)} s: ${stats.total} requests, RSS ${rssMB(srv.proc.pid).toFixed(1)} MB`), 60000);
await Promise.all(Array.from({ length: nClients }, client));
clearInterval(progress);
clearInterval(sampler);
const elapsed = (Date.now() - t0) / 1000;
await sleep(1500); // let cancelled requests and closing connections settle
const rssEnd = rssMB(srv.proc.pid);
if (Number.isNaN(rssWarm)) rssWarm = rssSamples.length ? rssSamples[0][1] : rssEnd;
const metrics = await fetch(srv.base + '/metrics', { headers: { Authorization: `Bearer ${KEY}` } }).then((r) => r.text()).catch(() => '');
const metric = (name) => Number((metrics.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [])[1]);
const slotsActive = metric('lfm2c_slots_active'), queueDepth = metric('lfm2c_queue_depth');
const connsOpen = metric('lfm2c_http_connections_open'), connsPending = metric('lfm2c_http_connections_pending');
const memHeld = metric('lfm2c_http_request_memory_bytes'); // charged by requests in progress: none left
const connsBusy = connsOpen - connsPending; // being answered (idle keep-alive sockets of fetch's pool are pending)
const health = await fetch(srv.base + '/health').then((r) => r.status).catch(() => 0);

// stop the server: it must exit 0 within 5 s, and a sanitizer build must report nothing
const tStop = Date.now();
const exit = srv.proc.exitCode !== null || srv.proc.signalCode !== null
  ? { code: srv.proc.exitCode, sig: srv.proc.signalCode, died: true }
  : await new Promise((r) => { srv.proc.removeAllListeners('exit'); srv.proc.on('exit', (code, sig) => r({ code, sig })); srv.proc.kill('SIGTERM'); });
const stopMs = Date.now() - tStop;
srv.log.end();
const sanitizer = /ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:/.test(srv.stderr());

// ---- report -------------------------------------------------------------------------------------
const lat = stats.latencies.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
const n5xx = Object.entries(stats.byStatus).filter(([s]) => /^5\d\d$/.test(s) && s !== '503').reduce((a, [, n]) => a + n, 0);
const nErrors = Object.values(stats.errors).reduce((a, n) => a + n, 0);
const nBad = Object.values(stats.badAnswers).reduce((a, n) => a + n, 0);
const rssGrowth = (rssEnd - rssWarm) / rssWarm;
const result = {
  lfm2c, model: modelPath, clients: nClients, seconds: Math.round(elapsed), requests: stats.total,
  count_5xx: n5xx, count_503: stats.byStatus['503'] || 0,
  requests_per_s: Math.round(stats.total / elapsed * 10) / 10,
  by_status: stats.byStatus, by_kind: stats.byKind, errors: stats.errors, bad_answers: stats.badAnswers,
  latency_ms: { p50: Math.round(q(0.5)), p90: Math.round(q(0.9)), p99: Math.round(q(0.99)), max: Math.round(lat[lat.length - 1] || 0) },
  rss_mb: { after_warmup: Math.round(rssWarm * 10) / 10, end: Math.round(rssEnd * 10) / 10, growth_pct: Math.round(rssGrowth * 1000) / 10, samples: rssSamples },
  end: { slots_active: slotsActive, queue_depth: queueDepth, request_memory_bytes: memHeld, connections_open: connsOpen, connections_busy: connsBusy, health, exit_code: exit.code, exit_signal: exit.sig, stop_ms: stopMs, sanitizer_report: sanitizer },
};
const checks = [
  [n5xx === 0, `5xx other than 503: ${n5xx}`],
  [nErrors === 0, `transport errors: ${nErrors}`],
  [rssGrowth <= 0.10, `RSS end within 10% of after warm-up (${result.rss_mb.after_warmup} -> ${result.rss_mb.end} MB)`],
  [slotsActive === 0 && queueDepth === 0, `every slot free at the end (active ${slotsActive}, queued ${queueDepth})`],
  [connsBusy <= 1, `no connection being answered but the metrics one (${connsBusy}; ${connsOpen} open)`],
  [memHeld === 0, `no request memory charged at the end (${memHeld} bytes)`],
  [health === 200, '/health at the end'],
  [!exit.died && exit.code === 0 && stopMs < 5000, exit.died ? `the server died during the soak (${exit.code ?? exit.sig})` : `SIGTERM: exit ${exit.code} in ${stopMs} ms`],
  [!sanitizer, 'no sanitizer report in the server log'],
];
result.checks = checks.map(([ok, what]) => ({ ok, what }));
result.bad_answer_count = nBad;
if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 1));
console.log(JSON.stringify({ ...result, rss_mb: { ...result.rss_mb, samples: undefined }, by_kind: undefined }, null, 1));
console.log(`requests by kind: ${JSON.stringify(stats.byKind)}`);
for (const [ok, what] of checks) console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
console.log(`answers that broke their contract (semantics, reported not gated): ${nBad}`);
process.exit(checks.every(([ok]) => ok) ? 0 : 1);
