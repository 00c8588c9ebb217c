// models.mjs — one `lfm2c serve` with several models (issue 74), driven by the clients people use:
// ollama-js (list, ps, show, chat with two models in turn and at once, keep_alive 0 / -1 /
// durations, the empty requests that load and unload, pull with progress from the loopback
// imitation of the Hub, delete), the OpenAI SDK switching models request by request, the
// Anthropic SDK; every API's 404 for a model it does not have, in that API's words, with the same
// help (the server's models, --alias, --accept-any-model: a coding agent's fixed name); a corrupt
// file's failed load (500 naming it) leaving the other models serving; concurrent first requests
// to a model not loaded sharing one load (/metrics lfm2c_model_loads_total).
// usage: node models.mjs BASE_URL API_KEY MODEL_A MODEL_B BROKEN [PULL_REPO]
//   MODEL_A is loaded at start (the first -m), MODEL_B is not; BROKEN is a truncated file;
//   PULL_REPO (e.g. test/tiny-GGUF): the Hub imitation serves it (its Q8_0 and Q4_0 are pulled).
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import { check, test, report } from './tally.mjs';

const [base, apiKey, A, B, BROKEN, REPO] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${apiKey}` };
const ol = new Ollama({ host: base, headers });
const oa = new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0 });
const an = new Anthropic({ apiKey, baseURL: base, maxRetries: 0 });
const user = [{ role: 'user', content: 'Hello there' }];
const tag = (m) => (m.includes(':') ? m : `${m}:latest`);
const loaded = async () => (await ol.ps()).models.map((m) => m.name);
async function throws(fn, status, what, more = () => true) {
  try { await fn(); check(false, `${what}: no error`); } catch (e) {
    const s = e.status ?? e.status_code;
    check(s === status && more(e), `${what}: ${s} ${e.message}`);
  }
}
async function raw(path, body, method = 'POST') {
  const r = await fetch(`${base}${path}`, { method, headers: { ...headers, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, text: await r.text() };
}
const loadsOf = async (id) => {
  const t = await (await fetch(`${base}/metrics`, { headers })).text();
  const esc = id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^lfm2c_model_loads_total\\{model="${esc}"\\} (\\d+)$`, 'm').exec(t);
  return m ? Number(m[1]) : -1;
};

await test('list and ps: every model listed, the first one loaded', async () => {
  const names = (await ol.list()).models.map((m) => m.name);
  check([A, B, BROKEN].every((m) => names.includes(tag(m))), `list: ${names}`);
  const ps = await ol.ps();
  check(ps.models.length === 1 && ps.models[0].name === tag(A), `ps: only ${A} loaded: ${ps.models.map((m) => m.name)}`);
  const m = ps.models[0];
  check(m.size > 0 && m.size_vram === 0 && Date.parse(m.expires_at) > Date.now() && m.details.format === 'gguf' &&
        m.context_length > 0 && m.device === 'CPU', `ps fields: ${JSON.stringify(m)}`);
  const ids = (await oa.models.list()).data.map((x) => x.id);
  check([A, B, BROKEN].every((x) => ids.includes(x)), `/v1/models: ${ids}`);
});

await test('the OpenAI SDK switches models request by request', async () => {
  for (const m of [A, B, A, B]) {
    const r = await oa.chat.completions.create({ model: m, messages: user, max_tokens: 4 });
    check(r.model === m && r.choices[0].message.content.length > 0, `chat on ${m}: answered by ${r.model}`);
  }
  const s = await oa.completions.create({ model: B, prompt: 'Once', max_tokens: 3 });
  check(s.model === B, `completions on ${B}`);
  const l = await loaded();
  check(l.includes(tag(A)) && l.includes(tag(B)), `both loaded: ${l}`);
});

await test('ollama: two models in turn and at once', async () => {
  const a = await ol.chat({ model: A, messages: user, stream: false, options: { num_predict: 5 } });
  const b = await ol.chat({ model: B, messages: user, stream: false, options: { num_predict: 5 } });
  check(a.model === A && b.model === B && a.done && b.done, `in turn: ${a.model}, ${b.model}`);
  const one = async (m, i) => {
    let text = '', last = null;
    for await (const p of await ol.chat({ model: m, messages: [{ role: 'user', content: `Story ${i}` }], stream: true,
      options: { num_predict: 12, temperature: 1 } })) { text += p.message.content; last = p; }
    return { m, text, done: last && last.done && last.model === m };
  };
  const all = await Promise.all([A, B, A, B, A, B].map(one));
  check(all.every((r) => r.done && r.text.length > 0), `at once: ${JSON.stringify(all.map((r) => [r.m, r.done, r.text.length]))}`);
  const e = await ol.embed({ model: B, input: ['a', 'b'] });
  check(e.model === B && e.embeddings.length === 2, 'embed on the second model');
});

await test('every API answers 404 for a model it does not have, in its own words, with the same help', async () => {
  // the help: the server's models, the route that lists them, how to answer to a client's fixed name
  const help = (m, list = '/v1/models') => /this server has '/.test(m) && m.includes(`GET ${list}`) &&
    /--alias NAME/.test(m) && /--accept-any-model/.test(m);
  const ollamaWords = (e) => /model "nope" not found, try pulling it first/.test(e.error || e.message) &&
    help(e.error || e.message, '/api/tags');
  await throws(() => oa.chat.completions.create({ model: 'nope', messages: user, max_tokens: 2 }), 404, 'openai chat',
    (e) => e.code === 'model_not_found' && /The model 'nope' does not exist/.test(e.message) && help(e.message));
  await throws(() => oa.completions.create({ model: 'nope', prompt: 'x', max_tokens: 2 }), 404, 'openai completions',
    (e) => e.code === 'model_not_found' && help(e.message));
  await throws(() => oa.embeddings.create({ model: 'nope', input: 'x' }), 404, 'openai embeddings', (e) => e.code === 'model_not_found');
  await throws(() => oa.responses.create({ model: 'nope', input: 'x', max_output_tokens: 2 }), 404, 'responses',
    (e) => e.code === 'model_not_found' && help(e.message));
  await throws(() => oa.models.retrieve('nope'), 404, 'openai /v1/models/nope');
  await throws(() => an.messages.create({ model: 'claude-opus-4-5', max_tokens: 2, messages: user }), 404, 'anthropic messages',
    (e) => e.error?.error?.type === 'not_found_error' && /model: claude-opus-4-5/.test(e.message) && help(e.error.error.message));
  await throws(() => an.messages.countTokens({ model: 'nope', messages: user }), 404, 'anthropic count_tokens',
    (e) => e.error?.error?.type === 'not_found_error' && help(e.error.error.message));
  await throws(() => ol.chat({ model: 'nope', messages: user, stream: false }), 404, 'ollama chat', ollamaWords);
  await throws(() => ol.generate({ model: 'nope', prompt: 'x', stream: false }), 404, 'ollama generate', ollamaWords);
  await throws(() => ol.embed({ model: 'nope', input: 'x' }), 404, 'ollama embed', ollamaWords);
  await throws(() => ol.generate({ model: 'nope', prompt: '', keep_alive: 0 }), 404, 'ollama unload', ollamaWords);
  await throws(() => ol.show({ model: 'nope' }), 404, 'ollama show', (e) => /not found/.test(e.error || e.message));
});

await test('a corrupt file: a clear 500, and the other models serve on', async () => {
  await throws(() => ol.chat({ model: BROKEN, messages: user, stream: false }), 500, 'ollama chat on a truncated file',
    (e) => (e.error || e.message).includes(BROKEN));
  await throws(() => oa.chat.completions.create({ model: BROKEN, messages: user, max_tokens: 2 }), 500, 'openai chat on it',
    (e) => e.code === 'model_load_failed' && e.message.includes('cannot load model'));
  const r = await ol.chat({ model: A, messages: user, stream: false, options: { num_predict: 3 } });
  check(r.done && r.model === A, 'the first model still answers');
  check(!(await loaded()).includes(tag(BROKEN)), 'the broken model is not listed as loaded');
});

await test('keep_alive: 0 unloads after the answer, -1 never, a duration sets expires_at', async () => {
  const u = await ol.generate({ model: B, prompt: '', keep_alive: 0 });
  check(u.done && u.done_reason === 'unload' && !(await loaded()).includes(tag(B)), `empty generate, keep_alive 0: ${JSON.stringify(u)}`);
  const l = await ol.generate({ model: B, prompt: '' });
  check(l.done_reason === 'load' && (await loaded()).includes(tag(B)), `empty generate: loads (${l.done_reason})`);
  const c = await ol.chat({ model: B, messages: user, stream: false, keep_alive: 0, options: { num_predict: 3 } });
  check(c.done && c.message.content.length > 0 && !(await loaded()).includes(tag(B)), 'chat with keep_alive 0: answered, then unloaded');
  const cc = await ol.chat({ model: B, messages: [], keep_alive: '10m' });
  check(cc.done_reason === 'load' && cc.load_duration > 0, `empty chat loads it (load_duration ${cc.load_duration} ns)`);
  let p = (await ol.ps()).models.find((m) => m.name === tag(B));
  const left = p ? (Date.parse(p.expires_at) - Date.now()) / 1000 : -1;
  check(left > 540 && left <= 601, `keep_alive 10m: expires in ${left} s`);
  await ol.chat({ model: B, messages: [], keep_alive: -1 });
  p = (await ol.ps()).models.find((m) => m.name === tag(B));
  check(p && p.expires_at.startsWith('2318'), `keep_alive -1: never (${p && p.expires_at})`);
  await throws(() => ol.chat({ model: B, messages: user, keep_alive: 'soon' }), 400, 'a bad keep_alive',
    (e) => /keep_alive/.test(e.error || e.message));
  const emb = await ol.embed({ model: B, input: 'x', keep_alive: 0 });
  check(emb.embeddings.length === 1 && !(await loaded()).includes(tag(B)), '/api/embed with keep_alive 0 unloads');
});

await test('show: any model, loaded or not', async () => {
  const s = await ol.show({ model: B });
  const arch = s.model_info['general.architecture'];
  check(arch && s.details.format === 'gguf' && s.model_info[`${arch}.context_length`] > 0 && s.template.length > 0,
    `show ${B} (not loaded): ${arch}`);
  check(!(await loaded()).includes(tag(B)), 'show does not load it');
});

if (REPO) {
  const q8 = `${REPO}:Q8_0`, q4 = `${REPO}:Q4_0`;
  await test('pull with progress from the Hub, then serve it', async () => {
    const parts = [];
    for await (const p of await ol.pull({ model: q8, stream: true })) parts.push(p);
    const st = parts.map((p) => p.status);
    check(st[0] === 'pulling manifest' && st.at(-1) === 'success', `statuses: ${st}`);
    const prog = parts.filter((p) => p.total > 0);
    check(prog.length >= 1 && prog.at(-1).completed === prog.at(-1).total && prog.every((p) => p.digest),
      `progress lines: ${JSON.stringify(prog.slice(-2))}`);
    check((await ol.list()).models.some((m) => m.name === q8), 'listed after the pull');
    const s = await ol.show({ model: q8 });
    check(s.details.quantization_level === 'Q8_0', `show the pulled model: ${s.details.quantization_level}`);
    const one = await ol.pull({ model: q4, stream: false });
    check(one.status === 'success', `stream false: ${JSON.stringify(one)}`);
    await throws(() => ol.pull({ model: 'test/none-GGUF', stream: false }), 404, 'a repository the Hub does not have');
  });

  await test('concurrent first requests to a model not loaded share one load', async () => {
    check((await loadsOf(q8)) === -1 || (await loadsOf(q8)) === 0, 'not loaded before');
    const rs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => ol.chat({ model: q8, stream: false,
      messages: [{ role: 'user', content: `Hi ${i}` }], options: { num_predict: 3 } })));
    check(rs.every((r) => r.done && r.model === q8), 'six first requests answered');
    check((await loadsOf(q8)) === 1, `one load: ${await loadsOf(q8)}`);
  });

  await test('delete: a pulled model goes; a file given to the server stays', async () => {
    await ol.delete({ model: q4 });
    check(!(await ol.list()).models.some((m) => m.name === q4), 'no longer listed');
    await throws(() => ol.chat({ model: q4, messages: user, stream: false }), 404, 'a deleted model',
      (e) => /not found, try pulling it first/.test(e.error || e.message));
    const d = await raw('/api/delete', { model: A }, 'DELETE');
    check(d.status === 400 && JSON.parse(d.text).error.includes('not deleted'), `delete a -m file: ${d.status} ${d.text}`);
    const n = await raw('/api/delete', { model: 'nope' }, 'DELETE');
    check(n.status === 404, `delete an unknown model: ${n.status}`);
  });
}

report();
