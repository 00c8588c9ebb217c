// replicas.mjs — drives N `lfm2c serve` replicas behind HAProxy on loopback (tests/test_replicas.sh
// starts them): multi-turn conversations with and without session affinity, then a failure run in
// which one replica is killed (SIGKILL) and another drained (SIGTERM) mid-load. Bounded: a fixed
// number of conversations and requests, each with a timeout. Prints its figures and
// 'N passed, N failed' last. No dependencies beyond Node's fetch.
//
// usage: node replicas.mjs LB_URL KEY R1_URL,R2_URL,R3_URL PID1,PID2,PID3 [SINGLE_URL]
const [lb, key, replicaList, pidList] = process.argv.slice(2);
const replicas = replicaList.split(',');
const pids = pidList.split(',').map(Number);
let pass = 0, fail = 0;
const check = (name, cond, info = '') => {
  if (cond) pass++;
  else { fail++; console.error(`FAIL ${name} ${info}`); }
};
const sleep = ms => new Promise(r => setTimeout(r, ms));
const auth = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };

async function metric(url, name) {
  const r = await fetch(`${url}/metrics`, { headers: auth, signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  const m = text.match(new RegExp(`^${name.replace(/[:]/g, '\\:')} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}
async function cacheCounters() {
  let q = 0, h = 0;
  for (const u of replicas) {
    try { q += await metric(u, 'vllm:prefix_cache_queries_total'); h += await metric(u, 'vllm:prefix_cache_hits_total'); }
    catch { /* a dead replica counts nothing */ }
  }
  return { q, h };
}

// One chat request through the balancer; returns {status, servedBy, text, ms} or throws on a cut.
async function chat(messages, { session, stream = false, maxTokens = 12, timeoutMs = 30000 } = {}) {
  const headers = { ...auth };
  if (session) headers['X-Session-Id'] = session;
  const t0 = performance.now();
  const r = await fetch(`${lb}/v1/chat/completions`, {
    method: 'POST', headers, signal: AbortSignal.timeout(timeoutMs),
    body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0, stream }),
  });
  const servedBy = r.headers.get('x-served-by');
  if (!stream) {
    const body = await r.json().catch(() => null);
    return { status: r.status, servedBy, text: body?.choices?.[0]?.message?.content ?? '', ms: performance.now() - t0 };
  }
  // a stream is complete only with its [DONE] line
  const raw = await r.text();
  if (!raw.includes('data: [DONE]')) throw new Error(`stream cut (${raw.length} bytes)`);
  let text = '';
  for (const line of raw.split('\n'))
    if (line.startsWith('data: {')) text += JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? '';
  return { status: r.status, servedBy, text, ms: performance.now() - t0 };
}

// Conversations of `turns` turns each, `conc` at a time; with affinity each sends X-Session-Id.
async function conversations(n, turns, conc, affinity, tag) {
  const servers = new Map(); // conversation -> set of replicas that answered it
  let requests = 0, ok = 0;
  let next = 0;
  const t0 = performance.now();
  async function one(c) {
    const msgs = [{ role: 'system', content: `You are test assistant ${tag}-${c}. ` + 'Answer briefly. '.repeat(40) }];
    const seen = new Set();
    for (let t = 0; t < turns; t++) {
      msgs.push({ role: 'user', content: `turn ${t} of conversation ${c}: tell me something` });
      requests++;
      const r = await chat(msgs, { session: affinity ? `${tag}-${c}` : undefined });
      if (r.status === 200) ok++;
      seen.add(r.servedBy);
      msgs.push({ role: 'assistant', content: r.text });
    }
    servers.set(c, seen);
  }
  await Promise.all(Array.from({ length: conc }, async () => { while (next < n) await one(next++); }));
  return { requests, ok, servers, seconds: (performance.now() - t0) / 1000 };
}

// ---- 1. affinity: prefix-reuse hit rate with and without X-Session-Id ------------------------
const before = await cacheCounters();
const noAff = await conversations(9, 4, 3, false, 'rr');
const mid = await cacheCounters();
const aff = await conversations(9, 4, 3, true, 'aff');
const after = await cacheCounters();
const rate = (a, b) => (b.h - a.h) / Math.max(1, b.q - a.q);
const hitNo = rate(before, mid), hitAff = rate(mid, after);
console.log(`affinity off: ${noAff.ok}/${noAff.requests} ok, prefix-cache hit rate ${(100 * hitNo).toFixed(1)}%`);
console.log(`affinity on:  ${aff.ok}/${aff.requests} ok, prefix-cache hit rate ${(100 * hitAff).toFixed(1)}%`);
check('all conversation turns answered', noAff.ok === noAff.requests && aff.ok === aff.requests);
check('with affinity every conversation stays on one replica',
  [...aff.servers.values()].every(s => s.size === 1), JSON.stringify([...aff.servers.values()].map(s => [...s])));
check('without affinity conversations move between replicas', [...noAff.servers.values()].some(s => s.size > 1));
// Without affinity the round-robin can still hand a conversation's next turn to the replica that
// holds its prefix, and how often depends on timing (33% on a quiet machine, 54% once under the
// sanitizers' load), so the rate with affinity is held to most of what the prefixes allow (turns
// 2-4 of each conversation reuse all but their newest messages: 68.6% of the prompt tokens here)
// rather than to a margin over a figure that moves; the check above shows the pinning itself.
check('affinity raises the prefix-cache hit rate near its ceiling', hitAff > hitNo && hitAff >= 0.6, `${hitAff} vs ${hitNo}`);

// ---- 2. throughput: 3 replicas behind the balancer vs 1 replica directly ----------------------
// (all replicas share this machine's cores: this shows the mechanics, not a speedup)
async function burst(base) {
  const t0 = performance.now();
  const jobs = Array.from({ length: 24 }, (_, i) => fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: auth, signal: AbortSignal.timeout(60000),
    body: JSON.stringify({ messages: [{ role: 'user', content: `count ${i}` }], max_tokens: 32, temperature: 0 }),
  }).then(async r => ({ status: r.status, tokens: (await r.json()).usage?.completion_tokens ?? 0 })));
  const rs = await Promise.all(jobs);
  const s = (performance.now() - t0) / 1000;
  return { rs, s, tps: rs.reduce((a, r) => a + r.tokens, 0) / s };
}
{
  await burst(replicas[2]); await burst(lb); // warm-up: connections, slots
  const one = await burst(replicas[2]);
  const three = await burst(lb);
  console.log(`throughput, 24 requests x 32 tokens: 1 replica ${one.tps.toFixed(0)} tok/s (${one.s.toFixed(2)} s), ` +
              `3 replicas via HAProxy ${three.tps.toFixed(0)} tok/s (${three.s.toFixed(2)} s), ratio ${(three.tps / one.tps).toFixed(2)}`);
  check('throughput runs: all answered', one.rs.every(r => r.status === 200) && three.rs.every(r => r.status === 200));
}

// ---- 3. failure: SIGKILL one replica, SIGTERM (drain) another, mid-load ----------------------
// Pin streams to each replica by session ids whose hash lands there (found by probing).
async function sessionFor(server, avoid = new Set()) {
  for (let i = 0; i < 400; i++) {
    const id = `probe-${server}-${i}`;
    if (avoid.has(id)) continue;
    const r = await chat([{ role: 'user', content: 'ping' }], { session: id, maxTokens: 1 });
    if (r.servedBy === server) return id;
  }
  return null;
}
const s1 = await sessionFor('r1'), s2 = await sessionFor('r2'), s3 = await sessionFor('r3');
check('found a session id for each replica', s1 && s2 && s3);
const long = [{ role: 'user', content: 'write a long story' }];
// streams that take a few seconds (max_tokens large; the tiny model decodes ~1-2k tok/s here)
const streamOn = (sid) => chat(long, { session: sid, stream: true, maxTokens: 1500, timeoutMs: 60000 })
  .then(r => ({ ok: true, r }), e => ({ ok: false, e: String(e) }));
const killedStreams = [streamOn(s1), streamOn(s1)];
const drainedStreams = [streamOn(s2), streamOn(s2)];
await sleep(300);
process.kill(pids[0], 'SIGKILL');
process.kill(pids[1], 'SIGTERM');
const tFail = performance.now();
// non-streamed requests sent after the failure, on every session: the balancer must place them
let sent = 0, completed = 0, failed = 0;
const retriedTo = new Map();
for (let round = 0; round < 6; round++) {
  const batch = [s1, s2, s3, undefined].map(async sid => {
    sent++;
    try {
      const r = await chat([{ role: 'user', content: `after failure ${round}` }], { session: sid, maxTokens: 8 });
      if (r.status === 200) { completed++; retriedTo.set(r.servedBy, (retriedTo.get(r.servedBy) ?? 0) + 1); }
      else { failed++; console.error(`after-failure request: HTTP ${r.status}`); }
    } catch (e) { failed++; console.error(`after-failure request (session ${sid}): ${e} ${e.cause ?? ""}`); }
  });
  await Promise.all(batch);
  await sleep(150);
}
const k = await Promise.all(killedStreams), d = await Promise.all(drainedStreams);
console.log(`failure run: ${sent} non-streamed requests sent after the failure, ${completed} completed, ${failed} failed; answered by ${JSON.stringify(Object.fromEntries(retriedTo))}`);
console.log(`streams on the killed replica: ${k.filter(x => !x.ok).length}/${k.length} cut (${k.map(x => x.ok ? 'done' : x.e).join('; ')})`);
console.log(`streams on the draining replica: ${d.filter(x => x.ok).length}/${d.length} finished`);
check('no request lost after the failure', failed === 0 && completed === sent);
// (the draining replica may still answer a request that reached it before its signal was handled)
check('no answer came from the killed replica after the failure', !retriedTo.has('r1'),
  JSON.stringify(Object.fromEntries(retriedTo)));
check('streams on the killed replica end with an error, not a hang', k.every(x => !x.ok));
check('the draining replica finished its streams', d.every(x => x.ok), JSON.stringify(d.map(x => x.ok ? 'ok' : x.e)));
console.log(`failure handled in ${((performance.now() - tFail) / 1000).toFixed(1)} s`);
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
