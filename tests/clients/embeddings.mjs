// embeddings.mjs — the embedding libraries RAG pipelines are built on, against a running
// `lfm2c serve`: LangChain's OpenAIEmbeddings and OllamaEmbeddings (embedDocuments / embedQuery),
// the Vercel AI SDK's embed / embedMany through @ai-sdk/openai, @ai-sdk/openai-compatible and
// ollama-ai-provider-v2. Every vector must be the one `lfm2c embed` gives for the same text (the
// server's pooling, unit length), in the order given.
// usage: node embeddings.mjs BASE_URL API_KEY MODEL_ID LFM2C MODEL.gguf
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createOllama } from 'ollama-ai-provider-v2';
import { embed, embedMany } from 'ai';
import { OpenAIEmbeddings } from '@langchain/openai';
import { OllamaEmbeddings } from '@langchain/ollama';
import { execFileSync } from 'node:child_process';
import { check, test, report } from '../server/tally.mjs';

const [base, apiKey, modelId, lfm2c, model] = process.argv.slice(2);
const docs = ['LFM2 mixes short convolutions with attention.', 'Paris is the capital of France.', 'zebra crossing'];
const query = 'What is the capital of France?';
const want = execFileSync(lfm2c, ['embed', '-m', model, ...docs, query], { encoding: 'utf8' })
  .trim().split('\n').map((l) => JSON.parse(l));
const close = (a, b) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) < 1e-6);
const all = (vs, from = 0) => vs.length > 0 && vs.every((v, i) => close(v, want[from + i]));

await test('LangChain OpenAIEmbeddings', async () => {
  const e = new OpenAIEmbeddings({ model: modelId, apiKey, configuration: { baseURL: `${base}/v1` }, maxRetries: 0 });
  check(all(await e.embedDocuments(docs)), 'embedDocuments: the vectors of lfm2c embed, in order');
  check(all([await e.embedQuery(query)], docs.length), 'embedQuery');
});

await test('LangChain OllamaEmbeddings', async () => {
  const e = new OllamaEmbeddings({ model: modelId, baseUrl: base, headers: { Authorization: `Bearer ${apiKey}` }, maxRetries: 0 });
  check(all(await e.embedDocuments(docs)), 'embedDocuments (/api/embed)');
  check(all([await e.embedQuery(query)], docs.length), 'embedQuery (/api/embed)');
});

await test('AI SDK @ai-sdk/openai embedMany / embed', async () => {
  const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey });
  const m = openai.embedding(modelId);
  const r = await embedMany({ model: m, values: docs, maxRetries: 0 });
  check(all(r.embeddings), 'embedMany');
  check(r.usage?.tokens > docs.length, `embedMany usage: ${JSON.stringify(r.usage)}`);
  check(all([(await embed({ model: m, value: query, maxRetries: 0 })).embedding], docs.length), 'embed');
});

await test('AI SDK @ai-sdk/openai-compatible embedMany', async () => {
  const p = createOpenAICompatible({ name: 'lfm2c', baseURL: `${base}/v1`, apiKey });
  check(all((await embedMany({ model: p.textEmbeddingModel(modelId), values: docs, maxRetries: 0 })).embeddings), 'embedMany');
});

await test('AI SDK ollama-ai-provider-v2 embedMany', async () => {
  const ollama = createOllama({ baseURL: `${base}/api`, headers: { Authorization: `Bearer ${apiKey}` } });
  check(all((await embedMany({ model: ollama.embedding(modelId), values: docs, maxRetries: 0 })).embeddings), 'embedMany (/api/embed)');
});

report();
