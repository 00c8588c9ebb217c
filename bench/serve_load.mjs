// serve_load.mjs — bounded load benchmark of `lfm2c serve` on loopback.
//
//   node bench/serve_load.mjs --lfm2c build/lfm2c --model tests/data/lfm2-kq-dense-f16.gguf \
//        [--np 32] [--tokens 64] [--levels 1,8,32,128] [--threads N] [--device cpu|cuda] [--skip-reuse 1]
//        [--server lfm2c|llama] [--llama-server PATH] [--llama-args "-nr ..."] [--ctx-per-slot 4096]
//        [--prompt-max N]
//
// --llama-args: more arguments for llama-server, space-separated (on Intel AMX machines its MoE
// graphs abort at load unless -nr turns the AMX / repacked buffer types off: bench/CPU.md).
// --ctx-per-slot: each slot's context, both servers. --server llama starts llama.cpp's
// llama-server instead (side by side on the same file, slots,
// threads, prompts and output lengths): its -c is the total over the slots, so it gets
// np x ctx-per-slot, with continuous batching; it is ready when GET /health answers 200.
// Starts the server itself (port 0, loopback), then for each concurrency level C runs C clients
// at once, each streaming one chat completion of --tokens tokens (greedy; end-of-turn tokens are
// biased away so every request generates the same number of tokens). Reports total tokens/s
// (all streams), mean per-stream tokens/s (after the first token), time to first token (TTFT)
// and time per output token after it (TPOT). --prompt-max N pads each client's prompt with a
// seeded random number (1..N) of tokens of filler words (their tokens a word measured once through
// the server's /tokenize), vLLM's benchmark's random prompts up to 1,024 tokens.
// Then a 5-turn conversation with a long system prompt, against the server with prompt-prefix
// reuse and against one started with --no-prefix-reuse: prompt processing time per turn.
// Everything is bounded: at most sum(levels) + 10 requests. Plain fetch + SSE, no SDK needed.
// --device is passed to the server; --skip-reuse 1 leaves out the conversation (scripts/gpu_check.sh).
import { spawn } from 'node:child_process';
import net from 'node:net';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => {
  if (x.startsWith('--')) a.push([x.slice(2), all[i + 1]]);
  return a;
}, []));
const lfm2c = args.lfm2c || 'build/lfm2c';
const modelPath = args.model || 'tests/data/lfm2-kq-dense-f16.gguf';
const np = Number(args.np || 32);
const nTok = Number(args.tokens || 64);
const levels = (args.levels || '1,8,32,128').split(',').map(Number);
const threads = args.threads ? ['-t', args.threads] : [];   // default: the server's own
const device = args.device ? ['--device', args.device] : [];
const skipReuse = args['skip-reuse'] === '1';
const promptMax = Number(args['prompt-max'] || 0);
const WORDS = 'ocean river cloud stone light forest signal paper window garden number voice'.split(' ');
const filler = (r, n) => Array.from({ length: n }, (_, k) => WORDS[Number((BigInt(r >>> 3) * BigInt(k + 1)) % BigInt(WORDS.length))]).join(' ');
let tokensPerWord = 1; // the model's tokens a filler word (measured through /tokenize once the server is up)
// client i's prompt: the short question, and with --prompt-max a seeded run of filler words of 1..N tokens
const promptOf = (i, c) => {
  const q = `Client ${i} of ${c}: write about the ocean.`;
  if (promptMax <= 0) return q;
  const r = Number((BigInt(i) * 2654435761n + 12345n) & 0xFFFFFFFFn);
  return filler(r, Math.max(1, Math.floor((1 + r % promptMax) / tokensPerWord))) + '. ' + q;
};

const which = args.server || 'lfm2c';
const llamaServer = args['llama-server'] || '../peers/llama.cpp/build/bin/llama-server';
const ctxPerSlot = Number(args['ctx-per-slot'] || 4096);
const llamaArgs = (args['llama-args'] || '').split(' ').filter(Boolean);
if (which !== 'lfm2c' && which !== 'llama') throw new Error(`--server lfm2c|llama, not ${which}`);

// A free loopback port (llama-server has no port 0).
const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function startLlama(extra) {
  if (extra.includes('--no-prefix-reuse')) extra = ['--cache-reuse', '0', '--no-cache-prompt'];
  const port = await freePort();
  const p = spawn(llamaServer, ['-m', modelPath, '--host', '127.0.0.1', '--port', String(port), '-np', String(np),
    '-c', String(np * ctxPerSlot), '-cb', ...threads, ...llamaArgs, ...extra], { stdio: ['ignore', 'ignore', 'ignore'] });
  let exited = null;
  p.on('exit', (code, signal) => { exited = code ?? signal; });   // an abort has no code, only a signal
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 1200; i++) {   // at most 10 minutes: a 14 GB file loads in well under that
    if (exited === 'SIGKILL' && !llamaArgs.includes('-kvu')) {
      // most likely the kernel's out-of-memory killer during the load (bench/CPU.md: the 24B-A2B with
      // 32 slots on a 24 GB machine loaded only with -kvu)
      throw new Error('llama-server was killed (SIGKILL, most likely out of memory while loading); '
        + 'the 24B-A2B with 32 slots on a 24 GB machine needed --llama-args "-kvu" (bench/CPU.md)');
    }
    if (exited !== null) throw new Error(`llama-server exited (${exited})`);
    try { if ((await fetch(`${base}/health`)).status === 200) return { proc: p, base }; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 500));
  }
  p.kill('SIGKILL');
  throw new Error('llama-server did not become ready');
}

function startServer(extra) {
  if (which === 'llama') return startLlama(extra);
  return new Promise((resolve, reject) => {
    const p = spawn(lfm2c, ['serve', '-m', modelPath, '--port', '0', '-np', String(np), '-c', String(ctxPerSlot), ...threads,
      '--queue', '1024', ...device, ...extra], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) resolve({ proc: p, base: `http://127.0.0.1:${m[1]}` });
    });
    p.on('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
}
const stopServer = (s) => new Promise((r) => { s.proc.removeAllListeners('exit'); s.proc.on('exit', r); s.proc.kill('SIGTERM'); });

// One streamed chat completion: returns {ttft, total, tokens, cached, prompt}.
async function streamChat(base, messages, maxTokens) {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0, stream: true,
      stream_options: { include_usage: true }, logit_bias: { 7: -100, 2: -100 } }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = null, usage = null, text = '', buf = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i); buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) usage = j.usage;
      const d = j.choices?.[0]?.delta?.content;
      if (d) { if (ttft === null) ttft = performance.now() - t0; text += d; }
    }
  }
  const total = performance.now() - t0;
  if (!usage) throw new Error('the stream ended without usage (stream_options.include_usage)');
  return { ttft: ttft ?? total, total, tokens: usage.completion_tokens, cached: usage.prompt_tokens_details?.cached_tokens ?? -1,
    prompt: usage.prompt_tokens, text };
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const fmt = (x, d = 1) => x.toFixed(d);

const server = await startServer([]);
console.log(`${which === 'llama' ? llamaServer : lfm2c}: model ${modelPath}, ${np} slots, ${nTok} tokens per request, greedy`);
if (promptMax > 0) {
  const res = await fetch(`${server.base}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ content: filler(12345, 200) }) });
  tokensPerWord = ((await res.json()).tokens?.length || 200) / 200;
}
await streamChat(server.base, [{ role: 'user', content: 'warm up' }], 4);
console.log('\n| concurrency | requests | wall s | total tok/s | per-stream tok/s | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const c of levels) {
  const t0 = performance.now();
  const rs = await Promise.all(Array.from({ length: c }, (_, i) =>
    streamChat(server.base, [{ role: 'user', content: promptOf(i, c) }], nTok)));
  const wall = (performance.now() - t0) / 1000;
  const toks = rs.reduce((a, r) => a + r.tokens, 0);
  const perStream = rs.reduce((a, r) => a + (r.tokens - 1) / ((r.total - r.ttft) / 1000), 0) / rs.length;
  const ttfts = rs.map((r) => r.ttft), tpots = rs.map((r) => (r.total - r.ttft) / Math.max(r.tokens - 1, 1));
  console.log(`| ${c} | ${c} | ${fmt(wall, 2)} | ${fmt(toks / wall)} | ${fmt(perStream)} | ${fmt(pct(ttfts, 0.5))} | ${fmt(pct(ttfts, 0.9))} | ${fmt(pct(ttfts, 0.99))} | ${fmt(pct(tpots, 0.5), 2)} | ${fmt(pct(tpots, 0.99), 2)} |`);
}
await stopServer(server);
if (skipReuse) process.exit(0);

// Prefix reuse: 5 turns, each prompt = the whole conversation so far.
const system = 'You are a meticulous assistant. ' + 'Follow the house rules about tone, brevity and sources. '.repeat(60);
async function conversation(base) {
  const msgs = [{ role: 'system', content: system }];
  const turns = [];
  for (let t = 0; t < 5; t++) {
    msgs.push({ role: 'user', content: `Question ${t + 1}: what about topic ${t + 1}?` });
    const r = await streamChat(base, msgs, 24);
    turns.push(r);
    msgs.push({ role: 'assistant', content: r.text });
  }
  return turns;
}
const on = await startServer([]);
const withReuse = await conversation(on.base);
await stopServer(on);
const off = await startServer(['--no-prefix-reuse']);
const without = await conversation(off.base);
await stopServer(off);
console.log('\n5-turn conversation (prompt grows each turn), time to first token:');
console.log('| turn | prompt tokens | cached (reuse) | TTFT reuse ms | TTFT no reuse ms | speedup |');
console.log('|---:|---:|---:|---:|---:|---:|');
let sumOn = 0, sumOff = 0;
for (let t = 0; t < 5; t++) {
  const a = withReuse[t], b = without[t];
  sumOn += a.ttft; sumOff += b.ttft;
  console.log(`| ${t + 1} | ${a.prompt} | ${a.cached} | ${fmt(a.ttft)} | ${fmt(b.ttft)} | ${fmt(b.ttft / a.ttft, 2)}x |`);
}
console.log(`| all | | | ${fmt(sumOn)} | ${fmt(sumOff)} | ${fmt(sumOff / sumOn, 2)}x |`);
const same = withReuse.every((r, i) => r.text === without[i].text);
console.log(`answers identical with and without reuse: ${same}`);
