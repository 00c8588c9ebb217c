// frameworks.mjs — drives a running `lfm2c serve` with the agent frameworks built on top of the
// provider libraries (issue 36): LangGraph's ReAct agent (`@langchain/langgraph` createReactAgent
// over `@langchain/openai`), LlamaIndex TS (`@llamaindex/openai` LLM + `@llamaindex/workflow`
// agent) and Mastra (`@mastra/core` Agent over an OpenAI-compatible provider). Each check is a
// wire behaviour such an app relies on: a forced tool call whose input the tool receives valid,
// the tool result going back and the loop ending in text, streaming, structured output.
// usage: node frameworks.mjs BASE_URL API_KEY MODEL_ID
// The fixture models have random weights: forcing (tool_choice, response formats) is what makes
// the answers usable; a request after a tool result is sent with tool_choice "none" (a recording
// fetch rewrites it, as an app's "answer now" step would), so each loop ends after one round.
import { ChatOpenAI } from '@langchain/openai';
import { tool as lcTool } from '@langchain/core/tools';
import { createReactAgent } from '@langchain/langgraph/prebuilt';
import { OpenAI as LlamaOpenAI } from '@llamaindex/openai';
import { agent as llamaAgent, agentToolCallEvent, agentStreamEvent, stopAgentEvent } from '@llamaindex/workflow';
import { tool as llamaTool } from 'llamaindex';
import { Agent } from '@mastra/core/agent';
import { createTool } from '@mastra/core/tools';
import { z } from 'zod';
import { check, test as testWithin, report } from '../server/tally.mjs';
const test = (name, fn) => testWithin(name, fn, 60000); // a hang is a failure too (60 s each)

const [base, apiKey, modelId] = process.argv.slice(2);

// A fetch that records each chat request and, where the library left the choice to the model,
// forces it: `first` until a tool result is in the conversation, then "none" (the app's last step
// answers in text).
function forcing(first) {
  const log = [];
  const f = async (url, init) => {
    let body = init?.body;
    if (typeof body === 'string' && String(url).includes('/chat/completions')) {
      const b = JSON.parse(body);
      if (Array.isArray(b.tools) && b.tools.length && (b.tool_choice === undefined || b.tool_choice === 'auto')) {
        const answered = (b.messages || []).some((m) => m.role === 'tool');
        b.tool_choice = answered ? 'none' : first;
      }
      log.push(b);
      body = JSON.stringify(b);
    }
    return fetch(url, { ...init, body });
  };
  return { fetch: f, log };
}

const Weather = z.object({ city: z.enum(['Paris', 'Oslo', 'Lima']) });
const Contact = z.object({ name: z.string().min(1).max(20), age: z.number().int().min(0).max(120) });

// ---- LangGraph: createReactAgent over ChatOpenAI -------------------------------------------------
await test('langgraph: ReAct agent round trip', async () => {
  const seen = [];
  const weather = lcTool(async (input) => { seen.push(input); return JSON.stringify({ forecast: 'rain', city: input.city }); },
    { name: 'weather', description: 'Weather forecast for a city', schema: Weather });
  const rec = forcing('required');
  const llm = new ChatOpenAI({ model: modelId, apiKey, configuration: { baseURL: `${base}/v1`, fetch: rec.fetch },
    maxRetries: 0, temperature: 0, maxTokens: 300 });
  const app = createReactAgent({ llm, tools: [weather] });
  const out = await app.invoke({ messages: [{ role: 'user', content: 'Weather in Paris?' }] }, { recursionLimit: 8 });
  const msgs = out.messages;
  check(seen.length >= 1 && seen.every((x) => Weather.safeParse(x).success), `langgraph: the tool ran with valid input (${JSON.stringify(seen)})`);
  const ai = msgs.find((m) => m.tool_calls && m.tool_calls.length);
  check(ai && ai.tool_calls.every((c) => c.name === 'weather'), 'langgraph: the AI message carries the call');
  check(msgs.some((m) => m.getType?.() === 'tool' || m._getType?.() === 'tool'), 'langgraph: the tool message is in the state');
  const last = msgs[msgs.length - 1];
  check(typeof last.content === 'string' && (!last.tool_calls || last.tool_calls.length === 0), 'langgraph: the loop ends in text');
  check(rec.log.length === 2 && rec.log[1].messages.some((m) => m.role === 'tool' && m.tool_call_id === ai.tool_calls[0].id),
    `langgraph: the tool result went back under its call id (${rec.log.length} requests)`);
});

await test('langgraph: streamed agent', async () => {
  const weather = lcTool(async (input) => `rain in ${input.city}`, { name: 'weather', description: 'Weather', schema: Weather });
  const rec = forcing('required');
  // (not `streaming: true`: LangChain's invoke over a stream then counts the prompt's tokens with
  // tiktoken ranks fetched from tiktoken.pages.dev, retried for minutes where there is no network)
  const llm = new ChatOpenAI({ model: modelId, apiKey, configuration: { baseURL: `${base}/v1`, fetch: rec.fetch },
    maxRetries: 0, temperature: 0, maxTokens: 300 });
  const app = createReactAgent({ llm, tools: [weather] });
  const nodes = [];
  for await (const chunk of await app.stream({ messages: [{ role: 'user', content: 'Weather in Oslo?' }] }, { streamMode: 'updates', recursionLimit: 8 }))
    nodes.push(...Object.keys(chunk));
  check(nodes.includes('agent') && nodes.includes('tools'), `langgraph: streamed updates from both nodes (${nodes})`);
  // the model's own stream: a forced call arrives in chunks that assemble into a valid call
  const m = new ChatOpenAI({ model: modelId, apiKey, configuration: { baseURL: `${base}/v1` }, maxRetries: 0, temperature: 0, maxTokens: 300 })
    .bindTools([weather], { tool_choice: 'required' });
  let acc;
  for await (const ch of await m.stream('Weather in Lima?')) acc = acc ? acc.concat(ch) : ch;
  check(acc.tool_calls.length >= 1 && acc.tool_calls.every((c) => Weather.safeParse(c.args).success),
    `langgraph: streamed forced call (${JSON.stringify(acc.tool_calls)})`);
});

await test('langgraph: structured response', async () => {
  const rec = forcing('required');
  const llm = new ChatOpenAI({ model: modelId, apiKey, configuration: { baseURL: `${base}/v1`, fetch: rec.fetch },
    maxRetries: 0, temperature: 0.5, maxTokens: 60 }); /* the random text answer is read back as prompt */
  const weather = lcTool(async () => 'sunny', { name: 'weather', description: 'Weather', schema: Weather });
  const app = createReactAgent({ llm, tools: [weather], responseFormat: Contact });
  const out = await app.invoke({ messages: [{ role: 'user', content: 'A contact card.' }] }, { recursionLimit: 8 });
  check(Contact.safeParse(out.structuredResponse).success, `langgraph: structuredResponse satisfies the schema (${JSON.stringify(out.structuredResponse)})`);
});

// ---- LlamaIndex TS: OpenAI LLM + FunctionAgent ---------------------------------------------------
const llamaLLM = (rec, extra = {}) => new LlamaOpenAI({ model: modelId, apiKey, temperature: 0, maxTokens: 300,
  additionalSessionOptions: { baseURL: `${base}/v1`, fetch: rec.fetch, maxRetries: 0 }, ...extra });

await test('llamaindex: LLM chat, stream, tool call', async () => {
  const rec = forcing('required');
  const llm = llamaLLM(rec, { maxTokens: 8 });
  const r = await llm.chat({ messages: [{ role: 'user', content: 'Say hello.' }] });
  check(typeof r.message.content === 'string' && r.message.content.length > 0, 'llamaindex: chat content');
  let text = '';
  for await (const ch of await llm.chat({ messages: [{ role: 'user', content: 'Say hello.' }], stream: true })) text += ch.delta;
  check(text.length > 0, 'llamaindex: streamed deltas');
  const weather = llamaTool({ name: 'weather', description: 'Weather forecast for a city', parameters: Weather,
    execute: ({ city }) => `rain in ${city}` });
  const big = llamaLLM(rec);
  const t = await big.chat({ messages: [{ role: 'user', content: 'Weather in Lima?' }], tools: [weather] });
  const calls = t.message.options?.toolCall ?? [];
  check(calls.length >= 1 && calls.every((c) => c.name === 'weather' && Weather.safeParse(typeof c.input === 'string' ? JSON.parse(c.input) : c.input).success),
    `llamaindex: a forced call with valid input (${JSON.stringify(calls)})`);
});

await test('llamaindex: agent workflow round trip', async () => {
  const seen = [];
  const weather = llamaTool({ name: 'weather', description: 'Weather forecast for a city', parameters: Weather,
    execute: ({ city }) => { seen.push(city); return `rain in ${city}`; } });
  const rec = forcing('required');
  const a = llamaAgent({ llm: llamaLLM(rec), tools: [weather] });
  const events = a.runStream('Weather in Paris?');
  let calls = 0, deltas = 0, result;
  for await (const ev of events) {
    if (agentToolCallEvent.include(ev)) calls++;
    else if (agentStreamEvent.include(ev)) deltas++;
    else if (stopAgentEvent.include(ev)) { result = ev.data.result; break; }
  }
  check(calls >= 1 && seen.length >= 1 && seen.every((c) => ['Paris', 'Oslo', 'Lima'].includes(c)),
    `llamaindex: the agent called the tool with valid input (${calls} calls, ${JSON.stringify(seen)})`);
  check(typeof result === 'string', `llamaindex: the agent ended with an answer (${typeof result})`);
  check(rec.log.some((b) => b.messages.some((m) => m.role === 'tool')), 'llamaindex: the tool result went back');
  check(rec.log.every((b) => b.stream === true) && deltas > 0, `llamaindex: the agent streamed (${deltas} deltas)`);
});

// ---- Mastra: Agent over an OpenAI-compatible provider -------------------------------------------
const mastraModel = { providerId: 'lfm2c', modelId, url: `${base}/v1`, apiKey };

await test('mastra: agent tool call round trip', async () => {
  const seen = [];
  const weather = createTool({ id: 'weather', description: 'Weather forecast for a city', inputSchema: Weather,
    execute: async (input) => { seen.push(input); return { forecast: 'rain', city: input.city }; } });
  const agent = new Agent({ id: 'weather-agent', name: 'weather-agent', instructions: 'You tell the weather.', model: mastraModel,
    tools: { weather } });
  const r = await agent.generate('Weather in Oslo?', { toolChoice: 'required', maxSteps: 2, modelSettings: { maxOutputTokens: 300, temperature: 0 },
    prepareStep: ({ stepNumber }) => (stepNumber === 1 ? { toolChoice: 'none' } : undefined) });
  check(seen.length >= 1 && seen.every((x) => Weather.safeParse(x).success), `mastra: the tool ran with valid input (${JSON.stringify(seen)})`);
  check(r.toolCalls?.length >= 0 && r.steps?.length === 2, `mastra: two steps (${r.steps?.length})`);
  check(typeof r.text === 'string', 'mastra: the loop ended in text');
});

await test('mastra: streamed agent', async () => {
  const weather = createTool({ id: 'weather', description: 'Weather', inputSchema: Weather, execute: async ({ city }) => `rain in ${city}` });
  const agent = new Agent({ id: 'w2', name: 'w2', instructions: 'Weather.', model: mastraModel, tools: { weather } });
  const s = await agent.stream('Weather in Lima?', { toolChoice: 'required', maxSteps: 1, modelSettings: { maxOutputTokens: 300, temperature: 0 } });
  const kinds = new Set();
  for await (const part of s.fullStream) kinds.add(part.type);
  check(kinds.has('tool-call') && kinds.has('tool-result'), `mastra: streamed tool-call and tool-result (${[...kinds]})`);
});

await test('mastra: structured output', async () => {
  const agent = new Agent({ id: 'c', name: 'c', instructions: 'Contacts.', model: mastraModel });
  const r = await agent.generate('A contact card.', { structuredOutput: { schema: Contact }, modelSettings: { maxOutputTokens: 300, temperature: 0.5 } });
  check(Contact.safeParse(r.object).success, `mastra: the object satisfies the schema (${JSON.stringify(r.object)})`);
});

report();
