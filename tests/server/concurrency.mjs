// concurrency.mjs — 32 clients at once: all succeed, and at temperature 0 each gets exactly the
// answer it gets when the requests run one after another (batching must not change answers).
// usage: node concurrency.mjs BASE_URL API_KEY [CLIENTS [MAX_TOKENS]]   (default 32 clients, 24 tokens;
// fewer on a slow device: test_server.sh's LFM2C_TEST_SERVE_QUICK)
import OpenAI from 'openai';
import { check, report } from './tally.mjs';

const [base, apiKey, nArg, maxArg] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 300000 });
const N = Number(nArg) || 32, MAX = Number(maxArg) || 24;

// Prompts of different lengths, so prefill chunks and decode steps mix in the same batches.
const prompts = Array.from({ length: N }, (_, i) => `Request ${i}: ` + 'tell me a story about the sea. '.repeat(1 + (i % 7)));
const ask = (p, i) => i % 3 === 2
  ? client.completions.create({ model: 'fixture', prompt: p, max_tokens: MAX, temperature: 0 }).then((r) => r.choices[0].text)
  : client.chat.completions.create({ model: 'fixture', messages: [{ role: 'user', content: p }], max_tokens: MAX, temperature: 0, stream: i % 3 === 1 })
    .then(async (r) => {
      if (i % 3 === 0) return r.choices[0].message.content;
      let t = '';
      for await (const ch of r) t += ch.choices[0]?.delta?.content || '';
      return t;
    });

const serial = [];
for (let i = 0; i < N; i++) serial.push(await ask(prompts[i], i));
const t0 = Date.now();
const results = await Promise.allSettled(prompts.map((p, i) => ask(p, i)));
const secs = (Date.now() - t0) / 1000;
for (let i = 0; i < N; i++) {
  const r = results[i];
  check(r.status === 'fulfilled', `client ${i} failed: ${r.reason}`);
  if (r.status === 'fulfilled') check(r.value === serial[i], `client ${i}: concurrent ${JSON.stringify(r.value)} != serial ${JSON.stringify(serial[i])}`);
}
check(new Set(serial).size > N / 2, 'different prompts give different answers');
console.error(`concurrency: ${N} clients in ${secs.toFixed(2)} s`);
report();
