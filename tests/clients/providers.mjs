// providers.mjs — drives a running `lfm2c serve` with the provider libraries that found server-side
// failures (issue 36): the Vercel AI SDK's own providers (`@ai-sdk/openai` on the Responses API,
// `@ai-sdk/anthropic`, `ollama-ai-provider-v2`) and LangChain's (`@langchain/anthropic`,
// `@langchain/ollama`). Each check is a feature such a client uses in ordinary work: fresh samples
// without a seed, multi-turn with stored responses (item_reference), logprobs, Anthropic structured
// output, Ollama tool_choice and /api/generate (`context`).
// usage: node providers.mjs BASE_URL API_KEY MODEL_ID
// The fixture models have random weights: the checks are about what the libraries receive.
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOllama } from 'ollama-ai-provider-v2';
import { generateText, streamText, tool, Output } from 'ai';
import { ChatAnthropic } from '@langchain/anthropic';
import { ChatOllama, Ollama as OllamaLLM } from '@langchain/ollama';
import { z } from 'zod';
import { check, test, report } from '../server/tally.mjs';

const [base, apiKey, modelId] = process.argv.slice(2);
globalThis.AI_SDK_LOG_WARNINGS = false; // (unsupported-feature notes about the fixture's model id)

// the last request body each provider sent (a fetch that records it)
const lastBody = {};
const recording = (name) => async (url, init) => {
  try { lastBody[name] = JSON.parse(init?.body ?? '{}'); } catch { lastBody[name] = {}; }
  return fetch(url, init);
};
const Answer = z.object({ ok: z.boolean(), pick: z.enum(['a', 'b']) });
const isAnswer = (v) => v && typeof v.ok === 'boolean' && ['a', 'b'].includes(v.pick) && Object.keys(v).length === 2;
const weather = tool({
  description: 'Weather of a city',
  inputSchema: z.object({ city: z.enum(['Paris', 'Oslo']) }),
});

// ---- @ai-sdk/openai: the Responses API, store on by default ----------------------------------------
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey, fetch: recording('openai') });
const rmodel = openai.responses(modelId);

await test('@ai-sdk/openai: no seed, fresh samples', async () => {
  const texts = [];
  for (let i = 0; i < 8; i++) {
    const r = await generateText({ model: rmodel, prompt: 'Say something.', maxOutputTokens: 8, temperature: 1, maxRetries: 0 });
    texts.push(r.text);
  }
  check(new Set(texts).size >= 7, `@ai-sdk/openai: ${new Set(texts).size} distinct answers of 8 without a seed`);
});

await test('@ai-sdk/openai: multi-turn with stored responses (item_reference)', async () => {
  const messages = [{ role: 'user', content: 'Hello there.' }];
  const r1 = await generateText({ model: rmodel, messages, maxOutputTokens: 6, maxRetries: 0 });
  messages.push(...r1.response.messages, { role: 'user', content: 'And then?' });
  const r2 = await generateText({ model: rmodel, messages, maxOutputTokens: 4, maxRetries: 0 });
  // what was sent: the earlier assistant turn as a reference to the stored output item
  const sent = lastBody.openai?.input ?? [];
  check(sent.some((it) => it.type === 'item_reference'), `@ai-sdk/openai: the assistant turn went as an item_reference (${JSON.stringify(sent).slice(0, 200)})`);
  check(r2.usage.inputTokens > r1.usage.inputTokens, `@ai-sdk/openai: the referenced turn is in the prompt (${r1.usage.inputTokens} -> ${r2.usage.inputTokens})`);
});

await test('@ai-sdk/openai: responses logprobs', async () => {
  const r = await generateText({ model: rmodel, prompt: 'Hi', maxOutputTokens: 6, temperature: 1, seed: 5, maxRetries: 0,
    providerOptions: { openai: { logprobs: 3 } } });
  const lp = r.providerMetadata?.openai?.logprobs?.flat() ?? [];
  check(lp.length === r.usage.outputTokens && lp.every((e) => typeof e.logprob === 'number' && e.top_logprobs.length === 3),
    `@ai-sdk/openai: logprobs (${lp.length} entries for ${r.usage.outputTokens} tokens)`);
  const s = streamText({ model: rmodel, prompt: 'Hi', maxOutputTokens: 6, temperature: 1, seed: 5, maxRetries: 0,
    providerOptions: { openai: { logprobs: 2 } } });
  for await (const _ of s.textStream) { /* drain */ }
  const slp = (await s.providerMetadata)?.openai?.logprobs?.flat() ?? [];
  check(slp.length === lp.length && slp.every((e) => e.top_logprobs.length === 2), `@ai-sdk/openai: streamed logprobs (${slp.length})`);
});

// ---- @ai-sdk/anthropic: native structured output (output_config.format) -----------------------------
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey, fetch: recording('anthropic') });
await test('@ai-sdk/anthropic: structured output', async () => {
  const r = await generateText({ model: anthropic('claude-sonnet-4-5'), prompt: 'Answer.', maxOutputTokens: 200, maxRetries: 0,
    output: Output.object({ schema: Answer }) });
  const body = lastBody.anthropic ?? {};
  check(body.output_config?.format?.type === 'json_schema' || body.output_format?.type === 'json_schema',
    `@ai-sdk/anthropic: sent native structured output (${Object.keys(body)})`);
  check(isAnswer(r.output), `@ai-sdk/anthropic: a valid object (${r.text})`);
  const texts = [];
  for (let i = 0; i < 6; i++) {
    const t = await generateText({ model: anthropic('claude-sonnet-4-5'), prompt: 'Hi', maxOutputTokens: 8, temperature: 1, maxRetries: 0 });
    texts.push(t.text);
  }
  check(new Set(texts).size >= 5, `@ai-sdk/anthropic: ${new Set(texts).size} distinct answers of 6 without a seed`);
});

// ---- ollama-ai-provider-v2: /api/chat tool_choice, /api/generate -------------------------------------
const ollama = createOllama({ baseURL: `${base}/api`, headers: { Authorization: `Bearer ${apiKey}` } });
await test('ollama-ai-provider-v2: named tool choice', async () => {
  const r = await generateText({ model: ollama(modelId), prompt: 'Weather in Oslo?', tools: { weather },
    toolChoice: { type: 'tool', toolName: 'weather' }, maxOutputTokens: 200, maxRetries: 0 });
  check(r.toolCalls.length >= 1 && r.toolCalls[0].toolName === 'weather' && ['Paris', 'Oslo'].includes(r.toolCalls[0].input.city),
    `ollama-ai-provider-v2: a call to the named tool (${JSON.stringify(r.toolCalls)})`);
});
await test('ollama-ai-provider-v2: completion model (/api/generate)', async () => {
  const r = await generateText({ model: ollama.completion(modelId), prompt: 'Once upon a time', maxOutputTokens: 6, maxRetries: 0 });
  check(typeof r.text === 'string' && r.text.length > 0, `ollama-ai-provider-v2: /api/generate text (${r.text})`);
  const s = streamText({ model: ollama.completion(modelId), prompt: 'Once upon a time', maxOutputTokens: 6, maxRetries: 0 });
  let text = '';
  for await (const t of s.textStream) text += t;
  check(text.length > 0, 'ollama-ai-provider-v2: /api/generate streamed');
});

// ---- LangChain: @langchain/anthropic withStructuredOutput(jsonSchema), @langchain/ollama ------------
await test('@langchain/anthropic: withStructuredOutput jsonSchema', async () => {
  // (LangChain moves `enum` into the description for Anthropic: booleans keep the answer short)
  const Flags = z.object({ ok: z.boolean(), done: z.boolean() });
  const llm = new ChatAnthropic({ model: 'claude-sonnet-4-5', apiKey, anthropicApiUrl: base, maxTokens: 200, maxRetries: 0 });
  const v = await llm.withStructuredOutput(Flags, { method: 'jsonSchema' }).invoke('Answer.');
  check(v && typeof v.ok === 'boolean' && typeof v.done === 'boolean' && Object.keys(v).length === 2,
    `@langchain/anthropic: a valid object (${JSON.stringify(v)})`);
});
await test('@langchain/ollama: chat, tools, generate', async () => {
  const headers = { Authorization: `Bearer ${apiKey}` };
  const chat = new ChatOllama({ baseUrl: base, model: modelId, numPredict: 6, headers });
  const m = await chat.invoke('Hello');
  check(typeof m.content === 'string' && m.usage_metadata?.output_tokens > 0, '@langchain/ollama: chat');
  const texts = [];
  for (let i = 0; i < 6; i++) texts.push((await new ChatOllama({ baseUrl: base, model: modelId, numPredict: 8, temperature: 1, headers }).invoke('Hi')).content);
  check(new Set(texts).size >= 5, `@langchain/ollama: ${new Set(texts).size} distinct answers of 6 without a seed`);
  const llm = new OllamaLLM({ baseUrl: base, model: modelId, numPredict: 6, headers });
  const t = await llm.invoke('Once upon a time');
  check(typeof t === 'string' && t.length > 0, `@langchain/ollama: Ollama LLM (/api/generate): ${t}`);
});

report();
