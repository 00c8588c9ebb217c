// serve_reuse.mjs — the loads where prefix reuse decides a server's speed, lfm2c serve and
// llama-server side by side in one run (issue 73), on loopback, bounded in requests and time.
//
//   node bench/serve_reuse.mjs --lfm2c build/lfm2c --llama-server ../peers/llama/build/bin/llama-server \
//        --model M.gguf [--np 8] [--threads 2] [--ctx-per-slot 4096] [--rounds 1] [--only lfm2c|llama]
//        [--loads ttft,cached8,agent,chat4] [--lfm2c-args "..."] [--llama-args "..."]
//
// Each server is started once per round with the same slots, threads and per-slot context
// (llama-server gets -c np x ctx-per-slot, continuous batching), the rounds alternating the two.
// Requests are greedy chat completions with the end-of-turn tokens biased away, so every answer
// has its full length; streamed, so TTFT is the first content. The loads:
//   ttft     one client: a ~1,500-token prompt read first; the same prompt again; one sharing all
//            but its last ~20 tokens; the next turn of that conversation (TTFT each, and the
//            cached tokens the server reports)
//   cached8  8 clients, each its own ~64-token prompt sent once as a warm-up, then again, timed:
//            64-token answers (what lfm2c bench -b 8 -p 0 -n 64 measures without a server)
//   agent    one system prompt of ~1,500 tokens (tool definitions and instructions) sent once
//            as a warm-up, then 8 clients at once, each a different short question, 64 tokens
//   chat4    8 clients, each a 4-turn conversation (each turn resends it all), 64-token answers
// Reported per load and server: total completion tokens/s (all streams over the wall time),
// TTFT p50 / p99; and lfm2c / llama-server ratios.
import { spawn } from 'node:child_process';
import net from 'node:net';
import http from 'node:http';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => {
  if (x.startsWith('--')) a.push([x.slice(2), all[i + 1]]);
  return a;
}, []));
const lfm2c = args.lfm2c || 'build/lfm2c';
const llamaServer = args['llama-server'] || '../peers/llama/build/bin/llama-server';
const modelPath = args.model;
if (!modelPath) throw new Error('--model M.gguf');
const np = Number(args.np || 8);
const threads = args.threads ? ['-t', args.threads] : [];
const ctxPerSlot = Number(args['ctx-per-slot'] || 4096);
const rounds = Number(args.rounds || 1);
const loads = (args.loads || 'ttft,cached8,agent,chat4').split(',');
const only = args.only || '';
const extraArgs = { lfm2c: (args['lfm2c-args'] || '').split(' ').filter(Boolean),
  llama: (args['llama-args'] || '').split(' ').filter(Boolean) };
const N_TOK = 64;

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function start(which) {
  const port = await freePort();
  const argv = which === 'llama'
    ? [llamaServer, ['-m', modelPath, '--host', '127.0.0.1', '--port', String(port), '-np', String(np),
      '-c', String(np * ctxPerSlot), '-cb', ...threads, ...extraArgs.llama]]
    : [lfm2c, ['serve', '-m', modelPath, '--port', String(port), '-np', String(np), '-c', String(ctxPerSlot),
      ...threads, '--accept-any-model', '--metrics', ...extraArgs.lfm2c]];
  const p = spawn(argv[0], argv[1], { stdio: ['ignore', 'ignore', args.log ? 'inherit' : 'ignore'] });
  let exited = null;
  p.on('exit', (code, sig) => { exited = code ?? sig; });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 1200; i++) {   // at most 10 minutes
    if (exited !== null) throw new Error(`${which} exited (${exited})`);
    try {
      const r = await fetch(`${base}/${which === 'llama' ? 'health' : 'ready'}`);
      if (r.status === 200) return { which, proc: p, base };
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 500));
  }
  p.kill('SIGKILL');
  throw new Error(`${which} did not become ready`);
}
const stop = (s) => new Promise((r) => { s.proc.removeAllListeners('exit'); s.proc.on('exit', r); s.proc.kill('SIGTERM'); });

// One streamed greedy chat completion of exactly maxTokens tokens: {ttft, total, tokens, cached, prompt, text}.
// node:http, not fetch: fetch gives up on a server that sends no headers for 300 s (a busy peer);
// a connection per request (agent: false): llama-server closes a kept-alive connection after a
// streamed answer, and a request sent on it at once fails with 'socket hang up'.
function chat(base, messages, maxTokens) {
  const body = JSON.stringify({ model: 'm', messages, max_tokens: maxTokens, temperature: 0, stream: true,
    stream_options: { include_usage: true }, logit_bias: { 7: -100, 2: -100 } });
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/v1/chat/completions`, { method: 'POST', timeout: 1800000, agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let ttft = null, usage = null, text = '', buf = '', raw = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (res.statusCode !== 200) { raw += d; return; }
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i); buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
          const j = JSON.parse(ev.slice(6));
          if (j.usage) usage = j.usage;
          const c = j.choices?.[0]?.delta?.content;
          if (c) { if (ttft === null) ttft = performance.now() - t0; text += c; }
        }
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${raw}`));
        const total = performance.now() - t0;
        if (!usage) return reject(new Error('the stream ended without usage'));
        resolve({ ttft: ttft ?? total, total, tokens: usage.completion_tokens,
          cached: usage.prompt_tokens_details?.cached_tokens ?? -1, prompt: usage.prompt_tokens, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30 minutes')));
    req.on('error', (e) => { console.error('request to', base, 'failed:', e.message); reject(e); });
    req.end(body);
  });
}

// Deterministic filler text: words from a seed.
const WORDS = ('the a of to and in is for on that with as by at from this be are it an or have not which when ' +
  'file path data value user order price city weather result query search table report').split(' ');
function words(n, seed) {
  let x = seed >>> 0, out = [];
  for (let i = 0; i < n; i++) { x = (x * 1664525 + 1013904223) >>> 0; out.push(WORDS[(x >>> 8) % WORDS.length]); }
  return out.join(' ');
}
function toolsSystem() {   // ~1,500 tokens: tool definitions and house rules, as text
  const tools = [];
  for (let i = 0; i < 5; i++) {
    tools.push({ name: `tool_${i}_${WORDS[i + 20]}`, description: words(30, 100 + i),
      parameters: { type: 'object', properties: { query: { type: 'string', description: words(10, 200 + i) },
        limit: { type: 'integer' } }, required: ['query'] } });
  }
  return 'You are an agent. Call a tool when it helps. List of tools: ' + JSON.stringify(tools) +
    '\nHouse rules: ' + words(100, 7);
}

const fmt = (x, d = 1) => (x === undefined ? '-' : x.toFixed(d));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const summary = (rs, wall) => ({ tps: rs.reduce((a, r) => a + r.tokens, 0) / wall, ttft50: pct(rs.map((r) => r.ttft), 0.5),
  ttft99: pct(rs.map((r) => r.ttft), 0.99), wall, n: rs.length });

const LOADS = {
  async ttft(base) {
    const sys = toolsSystem();
    const q = words(30, 9);
    const first = await chat(base, [{ role: 'system', content: sys }, { role: 'user', content: q }], 8);
    const again = await chat(base, [{ role: 'system', content: sys }, { role: 'user', content: q }], 8);
    const late = await chat(base, [{ role: 'system', content: sys }, { role: 'user', content: words(16, 9) + ' ' + words(14, 10) }], 8);
    const next = await chat(base, [{ role: 'system', content: sys }, { role: 'user', content: q },
      { role: 'assistant', content: again.text }, { role: 'user', content: words(12, 11) }], 8);
    return { first, again, late, next };
  },
  async cached8(base) {
    const prompts = Array.from({ length: 8 }, (_, i) => [{ role: 'user', content: words(52, 300 + i) }]);
    await Promise.all(prompts.map((m) => chat(base, m, 4)));   // warm-up: each prompt read once
    const t0 = performance.now();
    const rs = await Promise.all(prompts.map((m) => chat(base, m, N_TOK)));
    return summary(rs, (performance.now() - t0) / 1000);
  },
  async agent(base) {
    const sys = toolsSystem();
    await chat(base, [{ role: 'system', content: sys }, { role: 'user', content: 'Hello.' }], 4);   // warm-up
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      chat(base, [{ role: 'system', content: sys }, { role: 'user', content: `Question ${i}: ${words(14, 400 + i)}?` }], N_TOK)));
    return summary(rs, (performance.now() - t0) / 1000);
  },
  async chat4(base) {
    const sys = 'You are a helpful assistant. ' + words(150, 5);
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const msgs = [{ role: 'system', content: sys }], rs = [];
      for (let t = 0; t < 4; t++) {
        msgs.push({ role: 'user', content: `Turn ${t + 1}: ${words(24, 500 + 10 * i + t)}` });
        const r = await chat(base, msgs, N_TOK);
        rs.push(r);
        msgs.push({ role: 'assistant', content: r.text });
      }
      return rs;
    }));
    return summary(all.flat(), (performance.now() - t0) / 1000);
  },
};

const results = { lfm2c: [], llama: [] };
const order = only ? [only] : ['lfm2c', 'llama'];
for (let round = 0; round < rounds; round++) {
  for (const which of (round % 2 ? [...order].reverse() : order)) {
    const srv = await start(which);
    await chat(srv.base, [{ role: 'user', content: 'warm up' }], 2);
    const r = {};
    for (const l of loads) {
      r[l] = await LOADS[l](srv.base);
      const s = r[l];
      if (l === 'ttft') console.log(`${which} ttft: ` + ['first', 'again', 'late', 'next'].map((k) =>
        `${k} ${fmt(s[k].ttft)} ms (prompt ${s[k].prompt}, cached ${s[k].cached})`).join(', '));
      else console.log(`${which} ${l}: ${fmt(s.tps)} tok/s, TTFT p50 ${fmt(s.ttft50)} ms, p99 ${fmt(s.ttft99)} ms, wall ${fmt(s.wall, 2)} s`);
    }
    if (which === 'lfm2c') {
      const m = await (await fetch(`${srv.base}/metrics`)).text();
      r.metrics = m.split('\n').filter((x) => /^lfm2c_(scheduler_seconds_total|checkpoint|prefix_copies|prefill_tokens_total|generated_tokens_total|batch_steps)/.test(x));
      console.log(`${which} metrics: ${r.metrics.join('; ')}`);
    }
    results[which].push(r);
    await stop(srv);
    console.log(`round ${round + 1}: ${which} done`);
  }
}
console.log(`\nmodel ${modelPath}, ${np} slots, threads ${args.threads || 'default'}, ${N_TOK}-token answers, greedy`);
for (const which of order) {
  for (const [k, r] of results[which].entries()) {
    if (r.ttft) {
      const t = r.ttft;
      console.log(`${which} round ${k + 1} TTFT ms: first ${fmt(t.first.ttft)} (prompt ${t.first.prompt}), again ${fmt(t.again.ttft)} ` +
        `(cached ${t.again.cached}), last ~20 differ ${fmt(t.late.ttft)} (prompt ${t.late.prompt}, cached ${t.late.cached}), ` +
        `next turn ${fmt(t.next.ttft)} (prompt ${t.next.prompt}, cached ${t.next.cached})`);
    }
    if (r.metrics) console.log(`${which} round ${k + 1} metrics: ${r.metrics.join('; ')}`);
  }
}
console.log('\n| load | server | total tok/s | TTFT p50 ms | TTFT p99 ms | wall s |');
console.log('|---|---|---:|---:|---:|---:|');
for (const l of loads.filter((x) => x !== 'ttft')) {
  for (const which of order) {
    for (const r of results[which]) {
      const s = r[l];
      console.log(`| ${l} | ${which} | ${fmt(s.tps)} | ${fmt(s.ttft50)} | ${fmt(s.ttft99)} | ${fmt(s.wall, 2)} |`);
    }
  }
  if (order.length === 2) {
    const best = (w, f) => Math.max(...results[w].map((r) => f(r[l])));
    console.log(`| ${l} | lfm2c / llama | ${fmt(best('lfm2c', (s) => s.tps) / best('llama', (s) => s.tps), 2)}x | | | |`);
  }
}
