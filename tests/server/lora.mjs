// lora.mjs — LoRA adapters served by a running `lfm2c serve --lora one=... --lora two=...:0.5`
// (alias 'fixture'), through the official clients (OpenAI incl. Responses, Anthropic, Ollama): the adapters are listed by the OpenAI models
// list, the Anthropic models list and Ollama's tags; a request picks one by 'model' (NAME or
// fixture:NAME) and gets the adapted model's greedy answer; requests for different adapters run
// at the same time (one batch per step) and give the answers they give alone.
// usage: node lora.mjs BASE_URL API_KEY
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import { check, test, report } from './tally.mjs';

const [base, apiKey] = process.argv.slice(2);

const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 120000 });
const an = new Anthropic({ baseURL: base, apiKey, maxRetries: 0, timeout: 120000 });
const ol = new Ollama({ host: base, headers: { Authorization: `Bearer ${apiKey}` } });

await test('models lists', async () => {
  const ids = [];
  for await (const m of oa.models.list()) ids.push(m);
  check(ids.map((m) => m.id).join(',') === 'fixture,one,two', `openai models: ${ids.map((m) => m.id)}`);
  check(ids[1].parent === 'fixture' && ids[2].owned_by === 'lfm2c', 'openai: an adapter names its base');
  const one = await oa.models.retrieve('one');
  check(one.id === 'one', 'openai: retrieve an adapter');
  const am = [];
  for await (const m of an.models.list()) am.push(m);
  check(am.map((m) => m.id).join(',') === 'fixture,one,two' && am.every((m) => m.type === 'model' && m.display_name),
        `anthropic models: ${JSON.stringify(am.map((m) => m.id))}`);
  const tags = await ol.list();
  check(tags.models.map((m) => m.name).join(',') === 'fixture:latest,fixture:one,fixture:two', `ollama tags: ${tags.models.map((m) => m.name)}`);
  const shown = await ol.show({ model: 'fixture:two' });
  check(typeof shown.modelfile === 'string', 'ollama: show an adapter');
});

const prompt = 'The quick brown fox';
const complete = async (model) => {
  const r = await oa.completions.create({ model, prompt, max_tokens: 12, temperature: 0 });
  return { text: r.choices[0].text, model: r.model };
};

await test('openai: per-request adapter', async () => {
  const b = await complete('fixture'), o = await complete('one'), o2 = await complete('fixture:one'), t = await complete('two');
  check(o.model === 'one' && b.model === 'fixture', `answers name the adapter (${o.model}, ${b.model})`);
  check(o.text !== b.text && t.text !== b.text && t.text !== o.text, 'each adapter answers differently');
  check(o2.text === o.text, 'NAME and ALIAS:NAME are the same adapter');
  // all at once: sequences with different adapters share the steps
  const models = ['one', 'fixture', 'two', 'one', 'two', 'fixture'];
  const all = await Promise.all(models.map(complete));
  const alone = { fixture: b.text, one: o.text, two: t.text };
  models.forEach((m, i) => check(all[i].text === alone[m], `concurrent '${m}' == alone: ${JSON.stringify(all[i].text)} vs ${JSON.stringify(alone[m])}`));
  // a second time: slots switch adapters and keep their prefixes only for the same one
  const again = await Promise.all(models.map(complete));
  models.forEach((m, i) => check(again[i].text === alone[m], `again '${m}'`));
});

await test('openai: streamed chat with an adapter', async () => {
  const msgs = [{ role: 'user', content: 'Hello there' }];
  const full = await oa.chat.completions.create({ model: 'two', messages: msgs, max_tokens: 10, temperature: 0 });
  let text = '', model = '';
  const s = await oa.chat.completions.create({ model: 'two', messages: msgs, max_tokens: 10, temperature: 0, stream: true });
  for await (const c of s) { text += c.choices[0]?.delta?.content ?? ''; model = c.model; }
  check(text === full.choices[0].message.content && model === 'two', 'stream == whole answer, model two');
  const base = await oa.chat.completions.create({ model: 'fixture', messages: msgs, max_tokens: 10, temperature: 0 });
  check(base.choices[0].message.content !== text, 'the base answers differently');
});

await test('anthropic and ollama pick the adapter by model', async () => {
  const ask = async (model) => (await an.messages.create({ model, max_tokens: 10, temperature: 0,
    messages: [{ role: 'user', content: 'Hello there' }] })).content.map((c) => c.text ?? '').join('');
  const [a1, a2, ab] = [await ask('one'), await ask('fixture:one'), await ask('fixture')];
  check(a1 === a2 && a1 !== ab, `anthropic: adapter one (${JSON.stringify(a1)}) vs base (${JSON.stringify(ab)})`);
  const chat = async (model) => (await ol.chat({ model, messages: [{ role: 'user', content: 'Hello there' }],
    options: { temperature: 0, num_predict: 10 } })).message.content;
  const [c1, c2, cb] = [await chat('fixture:two'), await chat('two'), await chat('fixture:latest')];
  check(c1 === c2 && c1 !== cb, `ollama: adapter two (${JSON.stringify(c1)}) vs base (${JSON.stringify(cb)})`);
  const resp = async (model) => (await oa.responses.create({ model, input: 'Hello there', temperature: 0, max_output_tokens: 10 })).output_text;
  const [r1, rb] = [await resp('one'), await resp('fixture')];
  check(r1 !== rb, `responses: adapter one (${JSON.stringify(r1)}) vs base (${JSON.stringify(rb)})`);
});

await test('unknown model', async () => {
  try { await oa.completions.create({ model: 'three', prompt, max_tokens: 2 }); check(false, 'no error'); }
  catch (e) { check(e.status === 404, `404 for an unknown adapter: ${e.status}`); }
});

report();
