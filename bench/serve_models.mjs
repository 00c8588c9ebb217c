// serve_models.mjs — one `lfm2c serve` with several models (issue 74): what loading costs and
// what two loaded models cost each other, on loopback.
//
//   node bench/serve_models.mjs --lfm2c build/lfm2c [--dir /tmp/models] [--presets 350m,1.2b,8b-a1b,24b-a2b]
//        [--type Q4_K_M] [--np 4] [--streams 4] [--tokens 64] [--threads N] [--skip-synth 1] [--pair 350m,1.2b]
//
// The files: DIR/lfm2-PRESET-TYPE.gguf, written by `lfm2c synth` when missing (random weights of
// the real shapes; the 24B-A2B at Q4_K_M is ~14 GB: give --presets to leave it out on a small
// machine). The server: every file as -m, a keep-alive of -1, no memory budget in the way
// (--memory-budget 100%), --threads as given, started once.
// 1. Load time, page cache cold and warm, per file: the file's pages dropped from the page cache
//    (posix_fadvise DONTNEED through python3, no root needed; the kernel keeps pages another
//    process maps), then an empty /api/generate loads it (Ollama's load_duration, and the wall
//    time); keep_alive 0 unloads it; the same again with the pages cached.
// 2. TTFT of a first request to a model not loaded against one loaded: a streamed chat of one
//    token to each file unloaded (cold cache), then again loaded.
// 3. Two models loaded (--pair A,B): --streams streams of --tokens tokens on A alone, then A's
//    and B's streams at once: each model's tokens/s alone and beside the other (the shared thread
//    pool: their steps take turns).
// Prints one table per part, and the CPU kind (/proc/cpuinfo's model name). Bounded: each part
// runs a fixed number of requests. Plain fetch, no SDK.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => {
  if (x.startsWith('--')) a.push([x.slice(2), all[i + 1]]);
  return a;
}, []));
const lfm2c = args.lfm2c || 'build/lfm2c';
const dir = args.dir || '/tmp/lfm2c-models';
const presets = (args.presets || '350m,1.2b,8b-a1b,24b-a2b').split(',');
const type = args.type || 'Q4_K_M';
const np = Number(args.np || 4), streams = Number(args.streams || 4), nTok = Number(args.tokens || 64);
const pair = (args.pair || `${presets[0]},${presets[1] || presets[0]}`).split(',');
const fileOf = (p) => `${dir}/lfm2-${p}-${type.toLowerCase()}.gguf`;
const idOf = (p) => `lfm2-${p}-${type.toLowerCase()}.gguf`;

function synth() {
  fs.mkdirSync(dir, { recursive: true });
  for (const p of presets) {
    if (fs.existsSync(fileOf(p)) || args['skip-synth'] === '1') continue;
    console.error(`synth ${fileOf(p)} ...`);
    execFileSync(lfm2c, ['synth', '--preset', `lfm2-${p}`, '--type', type, '-o', fileOf(p)], { stdio: 'inherit' });
  }
}

/* The file's pages out of the page cache (those no process maps). */
function dropCache(path) {
  execFileSync('python3', ['-c', 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)',
    path]);
}

async function startServer() {
  const m = presets.flatMap((p) => ['-m', fileOf(p)]);
  const extra = args.threads ? ['-t', args.threads] : [];
  const p = spawn(lfm2c, ['serve', ...m, '--host', '127.0.0.1', '--port', '0', '-np', String(np), '-c', '2048',
    '--keep-alive', '-1', '--memory-budget', '100%', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', () => {});
  for (let i = 0; i < 6000; i++) { /* the first model loads at start */
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
    if (m) return { p, base: `http://127.0.0.1:${m[1]}` };
    await new Promise((r) => setTimeout(r, 100));
  }
  p.kill();
  throw new Error('the server did not start');
}

async function post(base, path, body) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return r.json();
}

const unload = (base, id) => post(base, '/api/generate', { model: id, keep_alive: 0 });

/* 1. load time cold and warm */
async function loadTimes(base) {
  const rows = [];
  for (const p of presets) {
    const id = idOf(p), t = [];
    for (const cold of [true, false]) {
      await unload(base, id);
      if (cold) dropCache(fileOf(p));
      const t0 = performance.now();
      const r = await post(base, '/api/generate', { model: id, prompt: '' });
      t.push({ wall: (performance.now() - t0) / 1000, load: (r.load_duration || 0) / 1e9 });
    }
    rows.push({ model: id, GB: (fs.statSync(fileOf(p)).size / 1e9).toFixed(2), cold_s: t[0].load.toFixed(2),
      cold_wall_s: t[0].wall.toFixed(2), warm_s: t[1].load.toFixed(2), warm_wall_s: t[1].wall.toFixed(2) });
  }
  return rows;
}

/* One streamed chat: seconds to its first token, tokens, seconds in all. */
async function stream(base, id, tokens, prompt = 'Tell me a long story.') {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: id, messages: [{ role: 'user', content: prompt }], max_tokens: tokens, temperature: 0,
      stream: true, logit_bias: { 7: -100, 2: -100 } }) });
  const rd = r.body.getReader(), dec = new TextDecoder();
  let first = 0, n = 0, buf = '';
  for (;;) {
    const { done, value } = await rd.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, at).trim();
      buf = buf.slice(at + 1);
      if (!line.startsWith('data:') || line.includes('[DONE]')) continue;
      const j = JSON.parse(line.slice(5));
      if (j.choices?.[0]?.delta?.content) { if (!first) first = performance.now(); n++; }
    }
  }
  return { ttft: (first - t0) / 1000, n, secs: (performance.now() - t0) / 1000, after: (performance.now() - first) / 1000 };
}

/* 2. TTFT of a first request to an unloaded model, and loaded */
async function ttfts(base) {
  const rows = [];
  for (const p of presets) {
    const id = idOf(p);
    await unload(base, id);
    dropCache(fileOf(p));
    const cold = await stream(base, id, 1);
    const warm = await stream(base, id, 1);
    rows.push({ model: id, ttft_unloaded_s: cold.ttft.toFixed(2), ttft_loaded_s: warm.ttft.toFixed(3) });
  }
  return rows;
}

/* tokens/s of `streams` streams on each model of ids at once: each model's tokens over the time
 * until its own last stream ended (not the other's: a fast model beside a slow one ends first) */
async function rate(base, ids) {
  const t0 = performance.now();
  const all = await Promise.all(ids.flatMap((id) => Array.from({ length: streams }, () => stream(base, id, nTok)
    .then((s) => ({ id, ...s, end: performance.now() })))));
  return ids.map((id) => {
    const mine = all.filter((s) => s.id === id);
    const wall = (Math.max(...mine.map((s) => s.end)) - t0) / 1000;
    return { id, tok_s: mine.reduce((a, s) => a + s.n, 0) / wall };
  });
}

/* 3. two models loaded: each alone, then both at once */
async function pairRates(base) {
  const [a, b] = pair.map(idOf);
  for (const id of [a, b]) await stream(base, id, 4); /* both loaded, warm */
  await rate(base, [a, b]); /* warm-up */
  const [aAlone] = await rate(base, [a]), [bAlone] = await rate(base, [b]);
  const both = await rate(base, [a, b]);
  return [{ model: a, alone_tok_s: aAlone.tok_s.toFixed(1), beside_tok_s: both[0].tok_s.toFixed(1) },
    { model: b, alone_tok_s: bAlone.tok_s.toFixed(1), beside_tok_s: both[1].tok_s.toFixed(1) }];
}

synth();
const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || os.arch();
console.log(`CPU: ${cpu}, ${os.cpus().length} CPUs; ${type}; -np ${np}; ${streams} streams of ${nTok} tokens`);
const { p, base } = await startServer();
try {
  console.log('\n1. load time (load_duration; wall: the whole empty request), page cache cold and warm');
  console.table(await loadTimes(base));
  console.log('\n2. time to the first token of a request to a model not loaded (cold cache), and loaded');
  console.table(await ttfts(base));
  console.log(`\n3. two models loaded (${pair.join(' + ')}): tokens/s of each, alone and beside the other`);
  console.table(await pairRates(base));
} finally {
  p.kill('SIGTERM');
}
