// embeddings.mjs — the embedding routes of a running `lfm2c serve` (alias 'fixture'), through the
// official clients: OpenAI's embeddings.create (its default base64 encoding and float, several
// inputs in order, token-id inputs, dimensions, usage, errors as BadRequestError) and Ollama's
// embed / embeddings. Every vector is checked against `lfm2c embed` on the same model (the
// library's lfm2c_embed, outside the server), so a wrong row, pooling or encoding fails; and
// embeddings requested while chats stream leave the chats' greedy answers as they are alone.
// usage: node embeddings.mjs BASE_URL API_KEY LFM2C MODEL.gguf [POOLING]
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { execFileSync } from 'node:child_process';
import { check, test, report } from './tally.mjs';

const [base, apiKey, lfm2c, model, pooling = 'last'] = process.argv.slice(2);
const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 120000 });
const ol = new Ollama({ host: base, headers: { Authorization: `Bearer ${apiKey}` } });

const texts = ['The quick brown fox', 'jumps over the lazy dog', 'zebra', 'The quick brown fox'];
// the CLI's vectors: unit length (and, with --no-normalize, as the model gives them)
const cli = (args) => execFileSync(lfm2c, ['embed', '-m', model, '--pooling', pooling, ...args], { encoding: 'utf8' })
  .trim().split('\n').map((l) => JSON.parse(l));
const want = cli(texts);
const wantRaw = cli(['--no-normalize', texts[0]])[0];
const maxDiff = (a, b) => (a.length !== b.length ? Infinity : Math.max(...a.map((x, i) => Math.abs(x - b[i]))));
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

await test('openai: several inputs, the SDK default (base64)', async () => {
  const r = await oa.embeddings.create({ model: 'fixture', input: texts });
  check(r.object === 'list' && r.model === 'fixture' && r.data.length === texts.length, `list: ${JSON.stringify(r).slice(0, 200)}`);
  r.data.forEach((d, i) => {
    check(d.object === 'embedding' && d.index === i, `item ${i}: ${d.object} ${d.index}`);
    check(maxDiff(d.embedding, want[i]) < 1e-6, `input ${i}: differs from lfm2c embed by ${maxDiff(d.embedding, want[i])}`);
  });
  check(maxDiff(r.data[0].embedding, r.data[3].embedding) === 0, 'the same text, the same vector');
  const tokens = r.usage.prompt_tokens;
  check(tokens > texts.length && r.usage.total_tokens === tokens, `usage: ${JSON.stringify(r.usage)}`);
});

await test('openai: float, token ids, dimensions', async () => {
  const f = await oa.embeddings.create({ model: 'fixture', input: texts[1], encoding_format: 'float' });
  check(maxDiff(f.data[0].embedding, want[1]) < 1e-6, 'encoding_format float');
  const ids = execFileSync(lfm2c, ['tokenize', '-m', model, '--ids', texts[2]], { encoding: 'utf8' });
  const t = await oa.embeddings.create({ model: 'fixture', input: [JSON.parse(ids)], encoding_format: 'float' });
  check(maxDiff(t.data[0].embedding, want[2]) < 1e-6, 'token ids embed as their text does');
  const d = await oa.embeddings.create({ model: 'fixture', input: texts[0], dimensions: 16, encoding_format: 'float' });
  const head = want[0].slice(0, 16), n = norm(head);
  check(d.data[0].embedding.length === 16 && Math.abs(norm(d.data[0].embedding) - 1) < 1e-5 &&
        maxDiff(d.data[0].embedding, head.map((x) => x / n)) < 1e-5, 'dimensions: the leading 16, unit length');
});

await test('openai: refusals', async () => {
  const refused = async (body, param) => {
    try {
      await oa.embeddings.create({ model: 'fixture', ...body });
      check(false, `accepted ${JSON.stringify(body).slice(0, 80)}`);
    } catch (e) {
      check(e instanceof OpenAI.BadRequestError && e.param === param, `${JSON.stringify(body).slice(0, 80)}: ${e.status} ${e.param} ${e.message}`);
    }
  };
  await refused({ input: '' }, 'input');
  await refused({ input: [[]] }, 'input');
  await refused({ input: [1, -4] }, 'input');
  await refused({ input: 'word '.repeat(3000) }, 'input'); // past the context (2048)
  await refused({ input: 'x', dimensions: 100000 }, 'dimensions');
  await refused({ input: 'x', encoding_format: 'int8' }, 'encoding_format');
  try {
    await oa.embeddings.create({ model: 'no-such-model', input: 'x' });
    check(false, 'an unknown model was accepted');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError, `unknown model: ${e.status}`);
  }
});

await test('ollama: embed and embeddings', async () => {
  const r = await ol.embed({ model: 'fixture', input: texts.slice(0, 3) });
  check(r.embeddings.length === 3 && r.embeddings.every((v, i) => maxDiff(v, want[i]) < 1e-6), 'embed: the vectors of lfm2c embed');
  check(r.model === 'fixture' && r.prompt_eval_count > 3 && r.total_duration > 0, `embed fields: ${r.model} ${r.prompt_eval_count}`);
  const one = await ol.embed({ model: 'fixture:latest', input: texts[2] });
  check(one.embeddings.length === 1 && maxDiff(one.embeddings[0], want[2]) < 1e-6, 'embed: one string');
  const legacy = await ol.embeddings({ model: 'fixture', prompt: texts[0] });
  check(maxDiff(legacy.embedding, wantRaw) < 1e-4 * norm(wantRaw), 'embeddings: the vector as the model gives it (not normalized)');
  const long = await ol.embed({ model: 'fixture', input: 'word '.repeat(3000) });
  check(long.embeddings.length === 1 && long.prompt_eval_count === 2048, `embed truncates to the context: ${long.prompt_eval_count}`);
  try {
    await ol.embed({ model: 'fixture', input: 'word '.repeat(3000), truncate: false });
    check(false, 'truncate: false accepted an input past the context');
  } catch (e) {
    check(e.status_code === 400, `truncate false: ${e.status_code} ${e.message}`);
  }
});

await test('embeddings beside streaming chats: the chats answer as alone', async () => {
  const ask = (i) => ({ model: 'fixture', messages: [{ role: 'user', content: `Question ${i}` }], max_tokens: 24, temperature: 0 });
  const alone = [];
  for (let i = 0; i < 3; i++) alone.push((await oa.chat.completions.create(ask(i))).choices[0].message.content);
  const chats = [0, 1, 2].map(async (i) => {
    let text = '';
    for await (const c of await oa.chat.completions.create({ ...ask(i), stream: true })) text += c.choices[0]?.delta?.content ?? '';
    return text;
  });
  const embeds = [0, 1, 2, 3].map(() => oa.embeddings.create({ model: 'fixture', input: texts, encoding_format: 'float' }));
  const got = await Promise.all(chats);
  const vecs = await Promise.all(embeds);
  got.forEach((t, i) => check(t === alone[i], `chat ${i} beside embeddings: '${t}' vs '${alone[i]}'`));
  vecs.forEach((r) => check(r.data.every((d, i) => maxDiff(d.embedding, want[i]) < 1e-6), 'embeddings beside chats'));
}, 120000);

report();
